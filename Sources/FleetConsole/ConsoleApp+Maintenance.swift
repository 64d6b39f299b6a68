import FleetControl
import Foundation
import RecoveryCore

extension ConsoleApp {
    /// A target's maintenance windows, written to the instance-config table as `recoveryctl targets set
    /// <target> maintenance=…` writes them (checked first: a bad value writes nothing). The workers apply
    /// them at their next discovery.
    func maintenance(_ target: String, form: [String: String], viewer: Viewer) async -> ConsoleResponse {
        let back = "/targets/\(ConsolePages.pathComponent(target))"
        let now = clock()
        let change: @Sendable (String?) throws -> String?
        switch form["action"] {
        case "for_hours":
            guard let hours = form["hours"].flatMap(Double.init), hours > 0, hours <= 24 * 7 else {
                return .plain(400, "hours must be between 0 and 168\n")
            }
            change = { current in try Self.addWindow(to: current, from: now, hours: hours) }
        case "set":
            // Only over what the person saw: a form loaded before someone else's change is refused.
            let seen = form["previous"] ?? ""
            let typed = (form["windows"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            change = { current in
                guard (current ?? "") == seen else {
                    throw ConsoleError("the windows changed since the page was loaded; reload it and try again")
                }
                return typed.isEmpty ? nil : typed
            }
        case "clear":
            change = { _ in nil }
        default:
            return .plain(400, "action must be for_hours, set or clear\n")
        }
        do {
            guard try await backend.status(now: now).targets.contains(where: { $0.target == target }) else {
                return .html(404, ConsolePages.problem("No target named \(target).", viewer: viewer))
            }
            let windows = try await backend.updateMaintenance(target: target, by: viewer.name, change: change)
            logger.notice(
                "console maintenance",
                metadata: ["person": "\(viewer.name)", "target": "\(ConsolePages.loggable(target))"])
            return .html(
                200, ConsolePages.maintenanceSaved(target: target, windows: windows, back: back, viewer: viewer))
        } catch {
            return .html(
                400,
                ConsolePages.problem("The maintenance windows of \(target) were not written: \(error)", viewer: viewer))
        }
    }

    /// The target's windows with a one-off window from `now` for `hours` added, and one-off windows that
    /// have ended dropped (a `null` or a single window counts as a list).
    static func addWindow(to current: String?, from now: Date, hours: Double) throws -> String {
        var list: [JSONValue] = []
        if let current {
            switch try JSONDecoder().decode(JSONValue.self, from: Data(current.utf8)) {
            case .array(let items): list = items
            case .null: list = []
            case let one: list = [one]
            }
        }
        list.removeAll { window in
            guard case .object(let fields) = window, case .string(let end)? = fields["end"],
                let date = Timestamp.parse(end)
            else { return false }
            return date <= now
        }
        list.append(
            .object([
                "start": .string(TimeInput.iso(now)),
                "end": .string(TimeInput.iso(now.addingTimeInterval(hours * 3600))),
            ]))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JSONValue.array(list)), as: UTF8.self)
    }
}
