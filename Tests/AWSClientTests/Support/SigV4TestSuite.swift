import Foundation
import HTTPTransport

/// AWS's published SigV4 test suite (Fixtures/aws4_testsuite, Apache-2.0, see its LICENSE and NOTICE).
/// A vector is a folder `X` holding `X.req` (the request), `X.creq` (canonical request), `X.sts`
/// (string to sign), `X.authz` (Authorization header) and `X.sreq` (the signed request).
enum SigV4TestSuite {
    static let accessKeyId = "AKIDEXAMPLE"
    static let secretAccessKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    static let region = "us-east-1"
    static let service = "service"
    /// 20150830T123600Z
    static let date = Date(timeIntervalSince1970: 1_440_938_160)

    static var root: URL {
        guard let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("the Fixtures resource folder is missing from the test bundle")
        }
        return fixtures.appendingPathComponent("aws4_testsuite")
    }

    /// Vector names relative to the suite root, e.g. `get-vanilla`, `normalize-path/get-slash`.
    static let vectorNames: [String] = {
        var names: [String] = []
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        let rootPath = root.standardizedFileURL.path
        for case let url as URL in walker where url.pathExtension == "req" {
            let folder = url.deletingLastPathComponent()
            guard url.deletingPathExtension().lastPathComponent == folder.lastPathComponent else { continue }
            var relative = folder.standardizedFileURL.path
            relative.removeFirst(rootPath.count + 1)
            names.append(relative)
        }
        return names.sorted()
    }()

    struct Vector {
        var name: String
        var request: ParsedRequest
        var signedRequest: ParsedRequest
        var canonicalRequest: String
        var stringToSign: String
        var authorization: String
    }

    struct ParsedRequest {
        var method: String
        var target: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    static func load(_ name: String) throws -> Vector {
        let folder = root.appendingPathComponent(name)
        let base = folder.lastPathComponent
        func read(_ ext: String) throws -> String {
            try String(contentsOf: folder.appendingPathComponent("\(base).\(ext)"), encoding: .utf8)
        }
        return Vector(
            name: name, request: try parse(read("req")), signedRequest: try parse(read("sreq")),
            canonicalRequest: try read("creq"), stringToSign: try read("sts"), authorization: try read("authz"))
    }

    /// Parses the suite's raw HTTP/1.1 text. Lines starting with whitespace continue the previous header
    /// value (kept with their line break, the signer folds them). The body follows the first blank line.
    static func parse(_ text: String) throws -> ParsedRequest {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
        guard let requestLine = lines.first, let firstSpace = requestLine.firstIndex(of: " "),
            let lastSpace = requestLine.lastIndex(of: " "), firstSpace < lastSpace
        else { throw ParseError(text: String(text.prefix(80))) }
        let method = String(requestLine[..<firstSpace])
        let target = String(requestLine[requestLine.index(after: firstSpace)..<lastSpace])
        var headers: [(name: String, value: String)] = []
        var index = 1
        while index < lines.count, !lines[index].isEmpty {
            let line = lines[index]
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += "\n" + line
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            } else {
                throw ParseError(text: String(line))
            }
            index += 1
        }
        let body = index < lines.count ? lines[(index + 1)...].joined(separator: "\n") : ""
        return ParsedRequest(method: method, target: target, headers: headers, body: Array(body.utf8))
    }

    struct ParseError: Error, CustomStringConvertible {
        var text: String
        var description: String { "cannot parse test-suite request near: \(text)" }
    }
}
