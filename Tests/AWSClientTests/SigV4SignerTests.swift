import FleetCrypto
import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

@Suite("SigV4 signer")
struct SigV4SignerTests {
    @Test("the AWS test suite was found")
    func suiteIsPresent() {
        #expect(SigV4TestSuite.vectorNames.count >= 30, "vectors: \(SigV4TestSuite.vectorNames)")
        #expect(SigV4TestSuite.vectorNames.contains("post-sts-token/post-sts-header-after"))
        #expect(SigV4TestSuite.vectorNames.contains("normalize-path/get-space"))
    }

    @Test("AWS SigV4 test vector", arguments: SigV4TestSuite.vectorNames)
    func vector(_ name: String) throws {
        let vector = try SigV4TestSuite.load(name)
        // The session token comes from the signed request; whether it is signed from the canonical request
        // (post-sts-header-after adds it after signing, see post-sts-token/readme.txt).
        let token = vector.signedRequest.header("X-Amz-Security-Token")
        let signsToken = vector.canonicalRequest.contains("x-amz-security-token:")
        let credentials = AWSCredentials(
            accessKeyId: SigV4TestSuite.accessKeyId, secretAccessKey: SigV4TestSuite.secretAccessKey,
            sessionToken: token)
        let signer = SigV4Signer(
            service: SigV4TestSuite.service, region: SigV4TestSuite.region,
            options: SigV4Signer.Options(signSecurityToken: signsToken || token == nil))
        let host = try #require(vector.request.header("Host"))
        let request = HTTPRequest(
            method: vector.request.method, url: "https://\(host)\(vector.request.target)",
            headers: vector.request.headers, body: vector.request.body)

        let signed = try signer.sign(request, credentials: credentials, date: SigV4TestSuite.date)

        #expect(signed.canonicalRequest == vector.canonicalRequest)
        #expect(signed.stringToSign == vector.stringToSign)
        #expect(signed.authorization == vector.authorization)
        #expect(signed.request.headers.last { $0.name == "Authorization" }?.value == vector.authorization)
        #expect(signed.request.headers.first { $0.name == "X-Amz-Date" }?.value == "20150830T123600Z")
        let sentTokens = signed.request.headers.filter { $0.name.lowercased() == "x-amz-security-token" }
        #expect(sentTokens.map(\.value) == (token.map { [$0] } ?? []))
    }

    @Test("S3 options sign the path as sent, without double encoding or normalisation")
    func s3PathRules() {
        let s3 = SigV4Signer(service: "s3", region: "us-east-1", options: .s3)
        let ec2 = SigV4Signer(service: "ec2", region: "us-east-1")
        #expect(s3.canonicalURI("/my-object//example//photo.user") == "/my-object//example//photo.user")
        #expect(s3.canonicalURI("/a%20b/c%2Fd") == "/a%20b/c%2Fd")
        #expect(ec2.canonicalURI("/a%20b") == "/a%2520b")
        #expect(ec2.canonicalURI("//a/./b/../c/") == "/a/c/")
        #expect(ec2.canonicalURI("") == "/")
    }

    @Test("canonical query: decoded then strictly re-encoded, sorted by key then value")
    func canonicalQuery() {
        #expect(SigV4Signer.canonicalQuery("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c=")
        #expect(SigV4Signer.canonicalQuery("k=a%20b&k2=a+b&sp=%7e*") == "k=a%20b&k2=a%2Bb&sp=~%2A")
    }

    @Test("session token and content hash headers are set once, replacing stale ones")
    func tokenAndContentHash() throws {
        let signer = SigV4Signer(
            service: "ec2", region: "us-west-2", options: SigV4Signer.Options(addContentSHA256Header: true))
        let credentials = AWSCredentials(accessKeyId: "AKID", secretAccessKey: "secret", sessionToken: "tok")
        let request = HTTPRequest(
            method: "POST", url: "http://127.0.0.1:5000/",
            headers: [("X-Amz-Security-Token", "old"), ("Authorization", "old"), ("x-amz-content-sha256", "old")],
            body: Array("Action=DescribeInstances".utf8))
        let signed = try signer.sign(request, credentials: credentials, date: SigV4TestSuite.date)
        let names = signed.request.headers.map { $0.name.lowercased() }
        #expect(names.filter { $0 == "x-amz-security-token" }.count == 1)
        #expect(names.filter { $0 == "authorization" }.count == 1)
        #expect(names.filter { $0 == "x-amz-content-sha256" }.count == 1)
        #expect(signed.canonicalRequest.contains("host:127.0.0.1:5000\n"))
        #expect(signed.canonicalRequest.contains("x-amz-security-token:tok\n"))
        #expect(
            signed.authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"))
        // The default port is not part of the signed host.
        let https = try signer.sign(
            HTTPRequest(url: "https://ec2.us-west-2.amazonaws.com:443/"), credentials: credentials,
            date: SigV4TestSuite.date)
        #expect(https.canonicalRequest.contains("host:ec2.us-west-2.amazonaws.com\n"))
    }

    @Test("presigned URL matches botocore's SigV4QueryAuth")
    func presign() throws {
        // Produced by botocore 1.43 SigV4QueryAuth(creds, "ec2", "us-west-2", expires=3600) at
        // 2026-11-22T04:09:39Z for the URL below.
        let expected =
            "https://ec2.us-west-2.amazonaws.com/?Action=CopySnapshot&Version=2016-11-15&SourceRegion=us-west-2&SourceSnapshotId=snap-0123456789abcdef0&DestinationRegion=eu-west-1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261122%2Fus-west-2%2Fec2%2Faws4_request&X-Amz-Date=20261122T040939Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=session%2Ftoken%2Bx%3D&X-Amz-Signature=38530417fc99f8627cb8d68d203a3340fa9980c1949b2207a57c1e66d3f6c369"
        let signer = SigV4Signer(service: "ec2", region: "us-west-2")
        let credentials = AWSCredentials(
            accessKeyId: SigV4TestSuite.accessKeyId, secretAccessKey: SigV4TestSuite.secretAccessKey,
            sessionToken: "session/token+x=")
        let date = try #require(UTCTime.parseISO8601("2026-11-22T04:09:39Z"))
        let url = try signer.presignURL(
            url:
                "https://ec2.us-west-2.amazonaws.com/?Action=CopySnapshot&Version=2016-11-15&SourceRegion=us-west-2&SourceSnapshotId=snap-0123456789abcdef0&DestinationRegion=eu-west-1",
            credentials: credentials, date: date, expires: 3600)
        #expect(url == expected)
    }

    @Test("signing key is cached per date and secret")
    func signingKeyCache() throws {
        let signer = SigV4Signer(service: "iam", region: "us-east-1")
        let a = try signer.signingKey(secret: "s1", dateStamp: "20150830")
        let b = try signer.signingKey(secret: "s2", dateStamp: "20150830")
        let c = try signer.signingKey(secret: "s1", dateStamp: "20150831")
        #expect(a != b && a != c)
        #expect(try signer.signingKey(secret: "s1", dateStamp: "20150830") == a)
        // AWS's documented example key (iam, us-east-1, 20150830, the suite's secret).
        #expect(
            hexEncoded(try signer.signingKey(secret: SigV4TestSuite.secretAccessKey, dateStamp: "20150830"))
                == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    }

    @Test("UTC date formatting and parsing")
    func dates() throws {
        #expect(UTCTime.amzDate(SigV4TestSuite.date) == "20150830T123600Z")
        #expect(UTCTime.parseISO8601("2015-08-30T12:36:00Z") == SigV4TestSuite.date)
        #expect(UTCTime.parseISO8601("2015-08-30T12:36:00.000Z") == SigV4TestSuite.date)
        #expect(UTCTime.parseISO8601("2015-08-30T14:36:00+02:00") == SigV4TestSuite.date)
        #expect(UTCTime.parseISO8601("2015-08-30 12:36") == nil)
        #expect(UTCTime.parseHTTPDate("Sun, 30 Aug 2015 12:36:00 GMT") == SigV4TestSuite.date)
        #expect(UTCTime.amzDate(Date(timeIntervalSince1970: 951_782_400)) == "20000229T000000Z")
        #expect(UTCTime.amzDate(Date(timeIntervalSince1970: -1)) == "19691231T235959Z")
    }
}
