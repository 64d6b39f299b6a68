import AWSClient
import Foundation
import RecoveryCore

/// How one SSM document run ended.
enum SSMRun: Sendable {
    /// The command reached a terminal status (check `status.isSuccess` and `responseCode`).
    case finished(CommandInvocation)
    /// SSM cannot run commands on the instance (no agent registered, not running, no profile).
    case unavailable(String)
    /// Sending or waiting failed (document missing, AWS error, the bounded wait ran out).
    case failed(String)
    /// Dry run: the SendCommand was written down, not sent.
    case planned
}

/// SSM on the instance (docs/actuator.md, "SSM"): the fleet's documents are named
/// `<SSM_DOCUMENT_PREFIX><short name>`; every wait is bounded and a timeout is a failure.
extension StepContext {
    func documentName(_ short: String) -> String { options.ssmDocumentPrefix + short }

    /// Sends `short` to the request's instance and waits (at most `timeout`) for it to finish. A command
    /// id already in the record (an actor died while it ran) is awaited instead of sending again.
    /// A shipped document gets `executionTimeout` = the wait (whole seconds, at most 9999, its pattern's
    /// limit; a value in `parameters` is replaced), so SSM stops the script when the actuator stops
    /// waiting for it: no restart-services still running under the reboot that follows.
    /// `fenced`: check the lease first and plan it in a dry run (false only for read-only diagnostics).
    /// `on`: another instance than the request's (diagnostics of a replacement), in its region; not fenced
    /// and never stored in the record.
    func runDocument(
        _ short: String, parameters: [String: [String]], timeout: Duration, fenced: Bool = true,
        on other: InstanceRef? = nil
    ) async throws -> SSMRun {
        guard let homeSSM = ssm else { return .unavailable("the actuator has no SSM client") }
        if let reason = ssmUnavailable, other == nil { return .unavailable(reason) }
        let ssm = other.map { $0.region == request.region ? homeSSM : homeSSM.withRegion($0.region) } ?? homeSSM
        let id = other?.id ?? request.instanceId
        let name = documentName(short)
        var commandId = record.resources.commandIds?[short]
        var parameters = parameters
        var timeout = timeout
        if FleetSSMDocument.shipped[short]?.parameters.contains("executionTimeout") == true {
            timeout = min(timeout, .seconds(FleetSSMDocument.maxExecutionTimeout))
            parameters["executionTimeout"] = [String(max(1, timeout.components.seconds))]
        }
        if commandId == nil {
            if let shipped = FleetSSMDocument.shipped[short], let problem = shipped.problem(with: parameters) {
                return .failed("not sent: \(name) would be refused: \(problem)")
            }
            let input = SendCommandInput(
                documentName: name, instanceIds: [id], parameters: parameters,
                timeoutSeconds: max(30, Int(timeout.components.seconds)),
                comment: String("AutoRecovery \(key)".prefix(100)))
            let send = { try await ssm.sendCommand(input) }
            do {
                let command: SSMCommand?
                if fenced {
                    let call = PlannedCall(
                        "ssm", "SendCommand", region: request.region,
                        [("DocumentName", name), ("InstanceId", id)]
                            + parameters.sorted { $0.key < $1.key }.map { ($0.key, $0.value.joined(separator: " ")) })
                    command = try await mutate(call, dryRunValue: nil as SSMCommand?, send)
                } else {
                    command = try await send()
                }
                guard let command else { return .planned }
                commandId = command.commandId
                record.resources.commandIds = (record.resources.commandIds ?? [:]).merging([short: command.commandId]) {
                    $1
                }
                // Stored now, so an actor that resumes waits for this command instead of sending another.
                if fenced { try await records.save(record) }
            } catch SSMError.invalidInstanceId(_, let message) {
                let why =
                    "SSM cannot run commands on \(id) (InvalidInstanceId: \(message)): no registered agent, or the instance is not running"
                if other == nil { ssmUnavailable = why }
                return .unavailable(why)
            } catch let error as AWSError where error.code == "InvalidDocument" {
                return .failed(
                    "the SSM document \(name) does not exist in \(other?.region ?? request.region); install compose/ssm/\(short).json under that name"
                )
            } catch let error as AWSError {
                return .failed("SendCommand \(name) failed: \(error)")
            }
        }
        guard let commandId else { return .planned }
        do {
            let invocation = try await ssm.waitUntilCommandFinished(
                commandId: commandId, instanceId: id, timeout: timeout, interval: options.ssmPollInterval)
            return .finished(invocation)
        } catch let error as WaiterError {
            return .failed(
                "\(name) (command \(commandId)) did not finish within \(timeout.components.seconds)s: \(error)")
        } catch SSMError.invalidInstanceId(_, let message) {
            let why = "SSM cannot reach \(id): \(message)"
            if other == nil { ssmUnavailable = why }
            return .unavailable(why)
        } catch let error as AWSError {
            return .failed("waiting for \(name) (command \(commandId)) failed: \(error)")
        }
    }

    /// `text` cut to `limit` characters, with a marker saying how much was cut.
    static func truncated(_ text: String, _ limit: Int) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit)) + "\n… [truncated: \(limit) of \(text.count) characters]"
    }

    static func describe(_ invocation: CommandInvocation, limit: Int = 500) -> String {
        var text = "\(invocation.status) exit \(invocation.responseCode.map(String.init) ?? "?")"
        let out = invocation.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let err = invocation.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        if !out.isEmpty { text += "; output: " + truncated(String(out.suffix(limit * 2)), limit) }
        if !err.isEmpty { text += "; errors: " + truncated(String(err.suffix(limit * 2)), limit) }
        return text
    }

    // MARK: Diagnostics

    /// Best effort, bounded by `diagnosticsTimeout`: runs the diagnostics document and publishes its
    /// output (cut to `diagnosticsMaxCharacters`) as a `diagnostics` history event
    /// `<key>:diagnostics:<phase>`. Never throws and never fails the action. Read-only on the instance,
    /// so it is not fenced (a lost lease is caught by the next real mutation).
    func collectDiagnostics(_ phase: String, on other: InstanceRef? = nil) async {
        guard ssm != nil, config.ssm.diagnostics, !dryRun, other != nil || ssmUnavailable == nil else { return }
        let detail: String
        let which = other.map { " on \($0.id)" } ?? ""
        do {
            switch try await runDocument(
                "diagnostics", parameters: [:], timeout: options.diagnosticsTimeout, fenced: false, on: other)
            {
            case .finished(let invocation):
                var text =
                    "diagnostics \(phase)\(which) (\(invocation.commandId), \(invocation.status), exit \(invocation.responseCode.map(String.init) ?? "?")):\n"
                text += invocation.standardOutput
                if !invocation.standardError.isEmpty { text += "\n[stderr]\n" + invocation.standardError }
                detail = Self.truncated(text, options.diagnosticsMaxCharacters)
            case .unavailable(let why), .failed(let why):
                detail = "diagnostics \(phase)\(which) not collected: \(why)"
            case .planned:
                return
            }
        } catch {
            detail = "diagnostics \(phase)\(which) not collected: \(error)"
        }
        // The command id of "diagnostics" is per phase; forget it so "after" sends its own command.
        record.resources.commandIds?["diagnostics"] = nil
        logger.info("\(detail.prefix(200))")
        await event(.diagnostics, id: "\(key):diagnostics:\(phase)", detail: detail)
    }

    // MARK: Restart through SSM

    /// The restart step's SSM attempt (targets with `ssm_restart`): restart-services, verify-health, then
    /// the actuator's own check. Succeeded: the restart is done without a reboot. Nil: go on with the reboot
    /// (sub-step `ssm_fallback` records why).
    func ssmRestart(_ ec2: any EC2Operations, _ id: String) async throws -> StepResult? {
        guard config.ssm.restart, !isDone(.ssmFallback) else { return nil }
        let services = config.ssm.services.joined(separator: " ")
        let succeeded = StepResult.succeeded(
            summary:
                "the services \(services) on \(id) in \(request.region) were restarted with SSM; verify-health passed and the site answers, so no reboot was needed",
            newInstance: nil)
        if isDone(.ssmVerify) { return succeeded }

        func fallback(_ why: String) async throws -> StepResult? {
            note("SSM restart of \(id) did not fix it: \(why). Falling back to the reboot")
            try await finish(.ssmFallback, why)
            return nil
        }
        if pastDeadline && !dryRun { return try await fallback("the deadline has passed") }
        if !dryRun, let state = try await describe(ec2, id)?.state, state != .running {
            return try await fallback("instance \(id) is \(state)")
        }
        let timeout = dryRun ? options.ssmCommandTimeout : min(options.ssmCommandTimeout, remaining)
        if !isDone(.ssmRestart) {
            switch try await runDocument("restart-services", parameters: ["services": [services]], timeout: timeout) {
            case .unavailable(let why), .failed(let why): return try await fallback(why)
            case .planned: break
            case .finished(let invocation) where !invocation.status.isSuccess:
                return try await fallback("restart-services ended \(Self.describe(invocation))")
            case .finished(let invocation):
                try await finish(
                    .ssmRestart, "restart-services \(invocation.commandId): \(Self.describe(invocation, limit: 200))")
            }
        }
        var parameters: [String: [String]] = [:]
        if let url = record.resources.healthURL { parameters["url"] = [url] }
        // The document checks one status; a single expected code is passed, otherwise its default 200.
        if let only = config.settings.expectedStatus.first, config.settings.expectedStatus.count == 1, only.count == 1 {
            parameters["expectedStatus"] = [String(only.lowerBound)]
        }
        switch try await runDocument(
            "verify-health", parameters: parameters,
            timeout: dryRun ? timeout : min(options.ssmCommandTimeout, remaining))
        {
        case .unavailable(let why), .failed(let why): return try await fallback(why)
        case .planned:
            return try await fallback(
                "dry run: restart-services and verify-health would be sent; if they do not bring the site back, the reboot follows"
            )
        case .finished(let invocation) where !invocation.status.isSuccess:
            return try await fallback("verify-health ended \(Self.describe(invocation))")
        case .finished(let invocation):
            // The document's word is not enough: the actuator checks the status checks and the site itself.
            let (ok, detail) = try await waitHealthy(ec2, id, timeout: min(options.healthPollInterval * 3, remaining))
            guard ok else {
                return try await fallback(
                    "verify-health passed (\(invocation.commandId)) but the site is still down: \(detail)")
            }
            try await finish(.ssmVerify, "verify-health \(invocation.commandId) passed; \(detail)")
            return succeeded
        }
    }

    // MARK: The `ssm` repair

    /// Runs one of the fleet's documents on the instance. Succeeded when it exits 0; failed otherwise
    /// (also when SSM cannot reach the instance).
    func runSSMRepair(document: String, parameters: [String: [String]]) async throws -> StepResult {
        guard document.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            return .failed("'\(document)' is not a document name")
        }
        if let end = try await walk(ssmRepairPlan(document: document, parameters: parameters)) { return end }
        // Resumed after the command's result was recorded: the record holds it.
        let last = record.notes.last { $0.contains(documentName(document)) } ?? documentName(document)
        if record.resources.commandSucceeded == true {
            return .succeeded(summary: last, newInstance: nil)
        }
        return .failed(last)
    }

    /// The `ssm` repair: one sub-step, the document's run, whose result ends the step.
    func ssmRepairPlan(document: String, parameters: [String: [String]]) -> [PlannedSubStep] {
        let id = request.instanceId
        return [
            PlannedSubStep(.ssmCommand) { [self] in
                var parameters = parameters
                if pastDeadline && !dryRun {
                    // An actor that died after SendCommand left the command id: the command was sent, so its
                    // result is fetched once and reported, not "nothing was done".
                    if let commandId = record.resources.commandIds?[document] {
                        return try await lateSSMRepairResult(document: document, commandId: commandId)
                    }
                    return .failed(
                        "the deadline \(Timestamp.format(request.deadline)) passed before the command was sent; nothing was done"
                    )
                }
                // The decision's predicted repairs send restart-services without parameters: the units are the
                // target's ssm_services (the document has no default for them, so SSM would refuse it).
                if document == "restart-services",
                    (parameters["services"] ?? []).joined().trimmingCharacters(in: .whitespaces).isEmpty
                {
                    if config.ssm.services.isEmpty && record.resources.commandIds?[document] == nil {
                        return .failed(
                            "restart-services needs the units to restart and the request names none: set ssm_services for \(target); nothing was sent"
                        )
                    }
                    parameters["services"] = [config.ssm.services.joined(separator: " ")]
                }
                // Wait up to the document's own run limit (at least SSM_COMMAND_TIMEOUT), cut at the deadline;
                // runDocument passes the wait as executionTimeout, so the command ends when the wait does.
                let limit = max(
                    options.ssmCommandTimeout,
                    .seconds(FleetSSMDocument.shipped[document]?.defaultExecutionTimeout ?? 0))
                switch try await runDocument(
                    document, parameters: parameters, timeout: dryRun ? limit : min(limit, remaining))
                {
                case .unavailable(let why): return .failed(why)
                case .failed(let why): return .failed(why)
                case .planned:
                    try await finish(.ssmCommand, "dry run")
                    return .succeeded(summary: "dry run", newInstance: nil)
                case .finished(let invocation):
                    let text = Self.describe(invocation)
                    note("\(documentName(document)) on \(id): \(text)")
                    try await finish(.ssmCommand, "\(documentName(document)) \(invocation.commandId): \(text)") {
                        $0.commandSucceeded = invocation.status.isSuccess
                    }
                    if !invocation.status.isSuccess {
                        return .failed("\(documentName(document)) on \(id) ended \(text)")
                    }
                    return .succeeded(
                        summary: "\(documentName(document)) ran on \(id) in \(request.region): \(text)",
                        newInstance: nil)
                }
            }
        ]
    }

    /// Resumed after the deadline, with the command of an actor that died already sent: one
    /// GetCommandInvocation, and the outcome says what it found (finished, still running, unknown).
    private func lateSSMRepairResult(document: String, commandId: String) async throws -> StepResult {
        let id = request.instanceId
        let name = documentName(document)
        let late =
            "the deadline \(Timestamp.format(request.deadline)) passed while \(name) (command \(commandId), sent by an earlier actor) ran on \(id)"
        guard let ssm else { return .failed("\(late); the actuator has no SSM client to read its result") }
        let invocation: CommandInvocation
        do {
            invocation = try await ssm.getCommandInvocation(commandId: commandId, instanceId: id, pluginName: nil)
        } catch let error as SSMError {
            return .failed("\(late); its result cannot be read: \(error)")
        } catch let error as AWSError {
            return .failed("\(late); its result cannot be read: \(error)")
        }
        let text = Self.describe(invocation)
        guard invocation.status.isTerminal else {
            return .failed(
                "\(late) and is still \(invocation.status) (it stops by itself at its executionTimeout); its result is unknown"
            )
        }
        note("\(name) on \(id): \(text)")
        try await finish(.ssmCommand, "\(name) \(commandId): \(text)") {
            $0.commandSucceeded = invocation.status.isSuccess
        }
        if !invocation.status.isSuccess { return .failed("\(name) (\(commandId)) on \(id) ended \(text)") }
        return .succeeded(
            summary: "\(name) (\(commandId)) ran on \(id) in \(request.region): \(text)", newInstance: nil)
    }
}
