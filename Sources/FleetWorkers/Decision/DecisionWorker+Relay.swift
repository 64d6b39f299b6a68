import FleetRuntime
import RecoveryCore

extension DecisionWorker {
    /// The person a command acts for. A console user relays someone else's command and must name them in
    /// `on_behalf_of`; anyone else acts as themselves and may not name another. Both then go through the one
    /// `OPERATORS` check, so the console can act for nobody who is not an operator, and never as itself.
    func operatorOf(_ body: CommandBody, sentBy sender: String) throws -> String {
        let relayed = body.onBehalfOf
        if options.consoleUsers.contains(sender) {
            guard let person = relayed, !person.isEmpty else {
                FleetMetrics.commands(result: "unauthorized").increment()
                throw RejectMessage(
                    "console user '\(sender)' sent \(body.name) without on_behalf_of: the console relays operators' commands and acts on its own for nobody"
                )
            }
            return person
        }
        if let relayed, relayed != sender {
            FleetMetrics.commands(result: "unauthorized").increment()
            throw RejectMessage(
                "user '\(sender)' set on_behalf_of '\(relayed)': only a console user (CONSOLE_USERS) relays another person's command"
            )
        }
        return sender
    }
}
