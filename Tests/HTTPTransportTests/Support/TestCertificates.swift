import Foundation

/// A throwaway CA and server certificates, made with the `openssl` command line tool in a temporary
/// folder that `remove()` deletes.
struct TestCertificates {
    let directory: URL
    var caFile: String { path("ca.pem") }
    /// Valid for 127.0.0.1 and localhost, issued by the CA.
    var serverCertificate: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    /// Issued by the CA for another name only.
    var otherHostCertificate: String { path("other.pem") }
    var otherHostKey: String { path("other.key") }

    init() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("http-transport-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            try write(
                "ca.cnf",
                """
                [req]
                distinguished_name = dn
                x509_extensions = v3_ca
                prompt = no
                [dn]
                CN = HTTPTransport test CA
                [v3_ca]
                basicConstraints = critical,CA:TRUE
                keyUsage = critical,keyCertSign,cRLSign
                subjectKeyIdentifier = hash
                """)
            try openssl([
                "req", "-x509", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            ])
            try issue(name: "server", subjectAltName: "IP:127.0.0.1,DNS:localhost", days: 400)
            try issue(name: "other", subjectAltName: "DNS:elsewhere.example", days: 400)
        } catch {
            remove()
            throw error
        }
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// What `openssl x509 -enddate` says about a certificate, e.g. "Jun  3 12:00:00 2027 GMT".
    func notAfterText(_ certificate: String) throws -> String {
        let line = try openssl(["x509", "-enddate", "-noout", "-in", certificate])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix("notAfter=") else { throw TestSupportError("unexpected openssl output: \(line)") }
        return String(line.dropFirst("notAfter=".count))
    }

    private func issue(name: String, subjectAltName: String, days: Int) throws {
        try write(
            "\(name).ext",
            """
            basicConstraints = CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = \(subjectAltName)
            authorityKeyIdentifier = keyid
            """)
        try openssl([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)",
        ])
        try openssl([
            "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "\(name).pem", "-days", "\(days)", "-extfile", "\(name).ext",
        ])
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private func write(_ name: String, _ text: String) throws {
        try Data((text + "\n").utf8).write(to: directory.appendingPathComponent(name))
    }

    @discardableResult
    private func openssl(_ arguments: [String]) throws -> String {
        try runTool("/usr/bin/openssl", arguments, in: directory)
    }
}
