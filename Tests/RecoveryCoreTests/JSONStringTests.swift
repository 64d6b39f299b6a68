import Foundation
import RecoveryCore
import Testing

/// The one JSON string reader of the hand-written readers (the target's document, observations, the
/// recorder's rows): it reads what Foundation's decoder reads, to the same string, and refuses what
/// Foundation refuses.
@Suite("JSON strings read by hand")
struct JSONStringTests {
    /// `text` read from its first byte: the string and where reading ended.
    static func read(_ text: String) -> (String?, Int) {
        var index = 0
        let bytes = Array(text.utf8)
        let value = bytes.withUnsafeBufferPointer { JSONString.read($0, at: &index) }
        return (value, index)
    }

    /// What Foundation makes of the same string as a JSON document of its own (nil: refused).
    static func foundation(_ text: String) -> String? {
        try? JSONDecoder().decode(String.self, from: Data(text.utf8))
    }

    @Test(
        "reads what Foundation reads, to the same string, and stops just past the closing quote",
        arguments: [
            #""plain""#, #""""#, #""caf\u00e9 \u00E9""#, #""\"\\\/\b\f\n\r\t""#, #""ambulance \ud83d\ude91""#,
            "\"r\u{00e4}w \u{1F691} utf-8\"", #""mixed ö \n escape""#,
        ])
    func readsWhatFoundationReads(_ text: String) throws {
        let (value, end) = Self.read(text + #","next""#)
        let expected = try #require(Self.foundation(text))
        #expect(value == expected)
        #expect(end == text.utf8.count)
    }

    @Test(
        "refuses what Foundation refuses",
        arguments: [
            #""\ud83d""#,  // a lone high surrogate
            #""\ud83d\u0041""#,  // a high surrogate followed by no low one
            #""\ude91""#,  // a lone low surrogate
            #""\x41""#,  // an escape JSON does not define
            #""\u12G4""#,  // not hex
            #""\u12""#,  // cut short
            "\"tab\tinside\"",  // a raw control character
            "\"line\nbreak\"",
            #""no closing quote"#,
            #"no opening quote""#,
        ])
    func refusesWhatFoundationRefuses(_ text: String) {
        #expect(Self.read(text).0 == nil)
        #expect(Self.foundation(text) == nil, "Foundation refuses it too")
    }

    @Test("refuses bytes that are not UTF-8, with and without escapes")
    func refusesInvalidUTF8() {
        for body: [UInt8] in [[0xC3], [0xFF, 0x41], [0x5C, 0x6E, 0xC3]] {  // "\n" then a cut sequence
            let bytes = [UInt8(ascii: "\"")] + body + [UInt8(ascii: "\"")]
            var index = 0
            #expect(bytes.withUnsafeBufferPointer { JSONString.read($0, at: &index) } == nil)
            #expect((try? JSONDecoder().decode(String.self, from: Data(bytes))) == nil)
        }
    }
}
