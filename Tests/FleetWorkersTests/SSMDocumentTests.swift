import Foundation
import Testing

@testable import FleetWorkers

/// The SSM Command documents shipped in compose/ssm (docs/actuator.md, "SSM"): each must be a valid
/// schema 2.2 document whose parameters are all declared, described, referenced and whose defaults fit
/// their own allowed pattern (SSM substitutes parameters into the script text, so the patterns are
/// what keeps a parameter from becoming shell code).
@Suite("SSM documents in compose/ssm")
struct SSMDocumentTests {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("compose/ssm")
    static let expected = ["diagnostics", "disk-cleanup", "restart-services", "verify-health"]

    static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent("\(name).json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(name) is a JSON object")
    }

    /// `{{ name }}` references in any string of the document.
    static func references(in value: Any) -> Set<String> {
        switch value {
        case let s as String:
            let regex = try! NSRegularExpression(pattern: #"\{\{\s*([A-Za-z0-9_]+)\s*\}\}"#)
            return Set(
                regex.matches(in: s, range: NSRange(s.startIndex..., in: s)).map {
                    String(s[Range($0.range(at: 1), in: s)!])
                })
        case let a as [Any]: return a.reduce(into: Set()) { $0.formUnion(references(in: $1)) }
        case let o as [String: Any]: return o.values.reduce(into: Set()) { $0.formUnion(references(in: $1)) }
        default: return []
        }
    }

    @Test func theFourDocumentsAreShipped() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
        #expect(names == Self.expected)
    }

    @Test(arguments: expected)
    func documentIsWellFormed(_ name: String) throws {
        let document = try Self.load(name)
        #expect(document["schemaVersion"] as? String == "2.2")
        #expect((document["description"] as? String)?.isEmpty == false)
        let parameters = try #require(document["parameters"] as? [String: [String: Any]], "\(name) declares parameters")
        #expect(!parameters.isEmpty)
        let steps = try #require(document["mainSteps"] as? [[String: Any]])
        #expect(!steps.isEmpty)
        for step in steps {
            #expect(step["action"] as? String == "aws:runShellScript")
            let inputs = try #require(step["inputs"] as? [String: Any])
            let commands = try #require(inputs["runCommand"] as? [String])
            #expect(commands.last?.hasPrefix("exit ") == true, "\(name) ends with an explicit exit code")
        }
        let used = Self.references(in: steps)
        let declared = Set(parameters.keys)
        #expect(
            used.subtracting(declared).isEmpty,
            "\(name) uses undeclared parameters \(used.subtracting(declared).sorted())")
        #expect(
            declared.subtracting(used).isEmpty,
            "\(name) declares unused parameters \(declared.subtracting(used).sorted())")
        // A parameter must not appear outside mainSteps either (descriptions are free text).
        for (key, parameter) in parameters {
            #expect(parameter["type"] as? String == "String", "\(name).\(key) is a String (checked by its pattern)")
            #expect((parameter["description"] as? String)?.isEmpty == false, "\(name).\(key) is described")
            let pattern = try #require(parameter["allowedPattern"] as? String, "\(name).\(key) has an allowedPattern")
            #expect(pattern.hasPrefix("^") && pattern.hasSuffix("$"), "\(name).\(key): the pattern is anchored")
            let regex = try NSRegularExpression(pattern: pattern)
            for bad in ["a'b", "x;reboot", "$(id)", "`id`"] {
                #expect(
                    regex.firstMatch(in: bad, range: NSRange(bad.startIndex..., in: bad)) == nil,
                    "\(name).\(key) refuses \(bad)")
            }
            if let value = parameter["default"] as? String {
                #expect(
                    regex.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil,
                    "\(name).\(key): the default \(value) fits the pattern")
            }
        }
    }

    /// The actuator's table of the shipped documents (checked before SendCommand) matches the files.
    @Test(arguments: expected)
    func theActuatorsTableMatchesTheDocument(_ name: String) throws {
        let parameters = try #require(try Self.load(name)["parameters"] as? [String: [String: Any]])
        let known = try #require(FleetSSMDocument.shipped[name], "\(name) is in FleetSSMDocument.shipped")
        #expect(known.parameters == Set(parameters.keys))
        #expect(known.required == Set(parameters.filter { $0.value["default"] == nil }.keys))
        #expect(parameters["executionTimeout"]?["default"] as? String == String(known.defaultExecutionTimeout))
        #expect(
            parameters["executionTimeout"]?["allowedPattern"] as? String == "^[0-9]{1,4}$",
            "the actuator passes executionTimeout up to \(FleetSSMDocument.maxExecutionTimeout)")
    }
}
