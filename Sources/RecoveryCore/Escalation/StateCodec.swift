import Foundation

/// Encodes and decodes the stored state of `EscalationMachine` and `FleetBrake` (JSON in Redis). Keys are
/// sorted so equal states give equal bytes (measured: sorting costs nothing noticeable here); times are ISO 8601 UTC with milliseconds, like messages, so an
/// operator can read the state with `redis-cli GET`. A target's document and its ladder are written and
/// read by `TargetStateJSON`, the brake's by `FleetBrakeJSON` (the same bytes, without Codable's cost); a
/// document of another shape is read with the Codable decoder below.
public enum StateCodec {
    public static func encode(_ machine: EscalationMachine) throws -> [UInt8] { try TargetStateJSON.encode(machine) }
    public static func encode(_ brake: FleetBrake) throws -> [UInt8] { try FleetBrakeJSON.encode(brake) }

    public static func decodeMachine(_ bytes: [UInt8]) throws(StateDecodingError) -> EscalationMachine {
        if let machine = TargetStateJSON.decodeMachine(bytes) { return machine }
        return try decodeMachineWithCodable(bytes)
    }

    static func decodeMachineWithCodable(_ bytes: [UInt8]) throws(StateDecodingError) -> EscalationMachine {
        var machine = try decodeVersioned(EscalationMachine.self, bytes, inLadder: false) { $0.schemaVersion }
        machine.schemaVersion = EscalationMachine.currentSchemaVersion  // what it is written as from now on
        return machine
    }

    public static func encode(_ target: TargetMachine) throws -> [UInt8] { try TargetStateJSON.encode(target) }

    /// A target's whole document; its ladder carries the schema version.
    public static func decodeTarget(_ bytes: [UInt8]) throws(StateDecodingError) -> TargetMachine {
        if let target = TargetStateJSON.decodeTarget(bytes) { return target }
        return try decodeTargetWithCodable(bytes)
    }

    static func decodeTargetWithCodable(_ bytes: [UInt8]) throws(StateDecodingError) -> TargetMachine {
        var target = try decodeVersioned(TargetMachine.self, bytes, inLadder: true) { $0.ladder.schemaVersion }
        target.ladder.schemaVersion = EscalationMachine.currentSchemaVersion
        return target
    }

    /// A target's document, read once (the decision worker does this with every event). The schema version
    /// is checked on what was decoded, since a newer document may decode and would lose what this build
    /// does not know when written back; when it does not decode, the version is read on its own, so that a
    /// newer document's error says "upgrade the worker" rather than naming a field.
    private static func decodeVersioned<T: Decodable>(
        _ type: T.Type, _ bytes: [UInt8], inLadder: Bool, version: (T) -> Int
    ) throws(StateDecodingError) -> T {
        let newest = EscalationMachine.currentSchemaVersion
        let value: T
        do {
            value = try decodeValue(type, bytes, what: "target state")
        } catch {
            try checkVersion(bytes, inLadder: inLadder, newest: newest, what: "target state")
            throw error
        }
        try refuseNewer(version(value), newest: newest, what: "target state")
        return value
    }

    /// The brake, read by `FleetBrakeJSON` when it is of the shape this build writes, else by Codable.
    public static func decodeBrake(_ bytes: [UInt8]) throws(StateDecodingError) -> FleetBrake {
        if let brake = FleetBrakeJSON.decode(bytes) { return brake }
        return try decodeBrakeWithCodable(bytes)
    }

    static func decodeBrakeWithCodable(_ bytes: [UInt8]) throws(StateDecodingError) -> FleetBrake {
        try checkVersion(bytes, newest: FleetBrake.currentSchemaVersion, what: "fleet brake state")
        return try decodeValue(FleetBrake.self, bytes, what: "fleet brake state")
    }

    static func encodeValue<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try Timestamp.jsonEncoder().encode(value))
    }

    private struct Version: Decodable { var schemaVersion: Int }
    /// A target's document keeps the version in its ladder (`machine`).
    private struct TargetVersion: Decodable { var machine: Version }

    /// One check for every stored document: the schema version, at the top or in the target's ladder.
    private static func checkVersion(_ bytes: [UInt8], inLadder: Bool = false, newest: Int, what: String)
        throws(StateDecodingError)
    {
        let version: Version
        do {
            version =
                inLadder
                ? try JSONDecoder().decode(TargetVersion.self, from: Data(bytes)).machine
                : try JSONDecoder().decode(Version.self, from: Data(bytes))
        } catch {
            throw StateDecodingError(detail: "\(what) is not JSON with a schemaVersion: \(error)")
        }
        try refuseNewer(version.schemaVersion, newest: newest, what: what)
    }

    private static func refuseNewer(_ version: Int, newest: Int, what: String) throws(StateDecodingError) {
        guard version <= newest else {
            throw StateDecodingError(
                detail:
                    "\(what) has schemaVersion \(version), newer than this worker reads (\(newest)); upgrade the worker"
            )
        }
    }

    private static func decodeValue<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String)
        throws(StateDecodingError) -> T
    {
        let decoder = Timestamp.jsonDecoder()
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch {
            throw StateDecodingError(detail: "\(what) does not decode: \(error)")
        }
    }
}

/// Stored state that cannot be read. The worker must not overwrite it with a fresh state (that would
/// forget an open incident and the outage count): it should alert and leave the key alone.
public struct StateDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var detail: String
    public var description: String { "stored state refused: \(detail)" }
}
