import Foundation
import RecoveryCore
import Testing

@Suite("JSON values")
struct JSONValueTests {
    @Test func decodesAndEncodesBackAsItWas() throws {
        let text = #"{"a":1,"b":0.75,"c":"x","d":[true,null],"e":{"f":-9007199254740993}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        guard case .object(let o) = value else {
            Issue.record("not an object")
            return
        }
        #expect(o["a"] == .int(1) && o["b"] == .double(0.75) && o["c"]?.stringValue == "x")
        #expect(o["d"] == .array([.bool(true), .null]))
        #expect(o["e"] == .object(["f": .int(-9_007_199_254_740_993)]), "whole numbers beyond 2^53 stay exact")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(value), as: UTF8.self) == text)
    }

    @Test func numbersWrittenAsText() {
        #expect(JSONValue.number("42") == .int(42))
        #expect(JSONValue.number("0.5") == .double(0.5))
        #expect(JSONValue.number("1e400") == nil, "out of range is refused, not infinity")
        #expect(JSONValue.number("seven") == nil)
    }
}
