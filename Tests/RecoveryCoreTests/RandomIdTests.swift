import Foundation
import Testing

@testable import RecoveryCore

@Suite("Random message ids")
struct RandomIdTests {
    /// The form of `UUID().uuidString.lowercased()`: version 4, RFC variant, and no two alike.
    @Test func areVersion4UUIDs() throws {
        var seen = Set<String>()
        var bad: [String] = []
        for _ in 0..<10_000 {
            let id = RandomId.uuid()
            let uuid = UUID(uuidString: id)
            let bytes = uuid.map { withUnsafeBytes(of: $0.uuid) { Array($0) } } ?? []
            if uuid?.uuidString.lowercased() != id || bytes[6] >> 4 != 4 || bytes[8] >> 6 != 0b10 { bad.append(id) }
            seen.insert(id)
        }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
        #expect(seen.count == 10_000)
    }
}
