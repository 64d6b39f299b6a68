import FleetCrypto
import Testing

@Suite("FleetCrypto")
struct CryptoTests {
    @Test("SHA-256 matches FIPS 180-2 vectors")
    func sha256Vectors() throws {
        #expect(hexEncoded(try sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hexEncoded(try sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            hexEncoded(try sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(hexEncoded(try sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("HMAC-SHA-256 matches RFC 4231 cases 1, 2 and 6")
    func hmacVectors() throws {
        #expect(
            hexEncoded(try hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), data: "Hi There"))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            hexEncoded(try hmacSHA256(key: Array("Jefe".utf8), data: "what do ya want for nothing?"))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            hexEncoded(
                try hmacSHA256(
                    key: [UInt8](repeating: 0xaa, count: 131),
                    data: "Test Using Larger Than Block-Size Key - Hash Key First"))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        // An empty key and empty data are valid inputs.
        #expect(
            hexEncoded(try hmacSHA256(key: [], data: []))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    @Test("hex round-trips and rejects malformed input")
    func hex() {
        #expect(hexEncoded([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(hexDecoded("000FA0ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(hexDecoded("abc") == nil)
        #expect(hexDecoded("zz") == nil)
        #expect(hexDecoded("") == [])
    }

    @Test("secure random bytes have the requested length and differ between calls")
    func random() throws {
        #expect(try secureRandomBytes(count: 0).isEmpty)
        let a = try secureRandomBytes(count: 32)
        let b = try secureRandomBytes(count: 32)
        #expect(a.count == 32)
        #expect(a != b)  // 2^-256 chance of a false failure
    }
}
