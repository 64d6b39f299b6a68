import AWSClient
import Foundation
import RecoveryCore

/// Step 1, restart:
///
///     inspect → [ssm_restart → ssm_verify: done | ssm_fallback] → reboot → (healthy within the restart timeout? done)
///             → stop → stopped → start → running → eip → final check
///
/// The stop/start fallback moves the instance to new hardware. The Elastic IP is associated again when
/// it is no longer on the instance. A stopped instance is always started again, even after the
/// deadline; only the reboot and the stop are refused after it.
extension StepContext {
    func runRestart() async throws -> StepResult {
        // The plan ends with the final check, which always ends the step.
        try await walk(restartPlan()) ?? .failed("the restart plan ended without a result")
    }

    func restartPlan() -> [PlannedSubStep] {
        let id = request.instanceId
        let region = request.region
        let ec2 = home
        let timeoutText = "\(options.restartHealthTimeout.components.seconds)s"
        // Dry run: the stop/start calls are planned under this condition.
        let condition = { [self] in dryRun ? "the site is still down \(timeoutText) after the reboot" : nil }
        let rebootStarted: Set<SubStep> = [.reboot, .rebootUnhealthy]
        return [
            PlannedSubStep(.inspect) { [self] in
                guard let instance = try await describe(ec2, id) else {
                    return .failed(
                        "instance \(id) was not found in \(region); it cannot be restarted, the next step replaces it")
                }
                if instance.state == .terminated || instance.state == .shuttingDown {
                    return .failed(
                        "instance \(id) is \(instance.state) in \(region); it cannot be restarted, the next step replaces it"
                    )
                }
                let allocation = try await allocation(on: id, ec2: ec2)
                let healthURL = instance.tags[RecoveryTags.healthURL] ?? config.healthURL
                try await finish(
                    .inspect,
                    "\(id) is \(instance.state); Elastic IP \(allocation ?? "none"); health URL \(healthURL ?? "none")"
                ) {
                    recordOriginal(&$0, allocation: allocation, healthURL: healthURL)
                }
                return nil
            },
            // SSM first, when the target enables it: a service restart fixes many outages without a reboot.
            PlannedSubStep(.ssmRestart, skipWhenDone: rebootStarted) { [self] in try await ssmRestart(ec2, id) },
            PlannedSubStep(.reboot, skipWhenDone: rebootStarted) { [self] in
                // A reboot recorded as about to be sent counts as sent, whatever the deadline: a resumer must
                // neither send a second one nor report that nothing was done.
                if let sent = record.resources.rebootSentAt {
                    // An actor that died between sending the reboot and recording it: a second reboot would
                    // be a second outage. The health wait decides; if the site stays down, stop/start follows.
                    try await finish(
                        .reboot,
                        "a reboot of \(id) may have been sent at \(Timestamp.format(sent)) by an actor that stopped before recording it: not sent again, the health wait decides"
                    )
                    return nil
                }
                if pastDeadline && !dryRun {
                    // Say what did run: the SSM attempt may have restarted services before the deadline passed.
                    let ssmRan = (record.resources.commandIds ?? [:]).filter { $0.key != "diagnostics" }
                        .sorted { $0.key < $1.key }.map { "\($0.key) (command \($0.value))" }
                    return .failed(
                        "the deadline \(Timestamp.format(request.deadline)) passed before the reboot; "
                            + (ssmRan.isEmpty
                                ? "nothing was done"
                                : "SSM ran \(ssmRan.joined(separator: ", ")) and the instance was not rebooted"))
                }
                let state = try await describe(ec2, id)?.state
                if state == .stopped || state == .stopping {
                    note("instance \(id) was \(state!) when the restart began: starting it instead of rebooting")
                    try await finish(.rebootUnhealthy, "instance was \(state!): no reboot, stop/start instead")
                } else {
                    if !dryRun {
                        record.resources.rebootSentAt = clock()
                        do {
                            try await records.save(record)  // written ahead of the call: see StepResources
                        } catch {
                            // The mark may be stored all the same (a write no replica acknowledged stays on the
                            // primary): take it back, so that no resumer counts a reboot that was never sent.
                            record.resources.rebootSentAt = nil
                            _ = try? await records.save(record)
                            throw error
                        }
                    }
                    do {
                        try await mutate(PlannedCall("ec2", "RebootInstances", region: region, [("InstanceId", id)])) {
                            try await ec2.rebootInstances([id])
                        }
                        try await finish(.reboot, "RebootInstances sent for \(id)")
                    } catch let error as AWSError where error.kind.mayHaveActed {
                        // Whether it rebooted cannot be looked up, and a second reboot is a second outage: it
                        // is not sent again. The health wait decides; if the site stays down, stop/start follows.
                        try await finish(
                            .reboot,
                            "RebootInstances for \(id) got no clear answer (\(error.kind)); it may have rebooted: not sent again, the health wait decides"
                        )
                    }
                }
                return nil
            },
            PlannedSubStep(
                .rebootHealthy, skipWhenDone: [.rebootHealthy, .rebootUnhealthy], when: { [self] in isDone(.reboot) }
            ) { [self] in
                if dryRun {
                    try await finish(
                        .rebootUnhealthy, "dry run: would wait up to \(timeoutText) for the status checks and the site")
                } else {
                    let timeout = min(options.restartHealthTimeout, remaining)
                    if options.rebootSettle > .zero { try await Task.sleep(for: min(options.rebootSettle, timeout)) }
                    let (ok, detail) = try await waitHealthy(
                        ec2, id, timeout: max(.zero, timeout - options.rebootSettle))
                    if !ok { note("still down \(timeout.components.seconds)s after the reboot: \(detail)") }
                    try await finish(ok ? .rebootHealthy : .rebootUnhealthy, detail)
                }
                return nil
            },
            // A healthy reboot ends the step (also for an actor that resumes after it).
            PlannedSubStep(.rebootHealthy, skipWhenDone: [], when: { [self] in isDone(.rebootHealthy) }) {
                .succeeded(
                    summary: "instance \(id) in \(region) was rebooted; its status checks are ok and the site answers",
                    newInstance: nil)
            },
            // Stop/start: new hardware.
            PlannedSubStep(.stop, compensation: .init(until: .running) { [self] in try await startAgain() }) { [self] in
                // Look before refusing: an actor may have sent StopInstances and died before recording it; a
                // stopped instance is started again below, whatever the deadline.
                let state = dryRun ? nil : try await describe(ec2, id)?.state
                if state == .stopped || state == .stopping {
                    note(
                        "\(id) was found \(state!) before this actor stopped it (an earlier actor sent StopInstances): going on with the start"
                    )
                    try await finish(.stop, "\(id) was already \(state!)")
                    return nil
                }
                if pastDeadline && !dryRun {
                    return .failed(
                        "the site was still down after the reboot of \(id) and the deadline \(Timestamp.format(request.deadline)) has passed; no stop/start was made"
                    )
                }
                if !dryRun {
                    await notify(
                        Notice(
                            id: "\(key):actuator:stop_start", kind: .actionStarted, at: clock(), target: target,
                            instanceId: id,
                            region: region, incidentId: request.incidentId, step: .restart, nextStep: .restart,
                            commands: [RecoveryCtl.ack(target)],
                            reason: .actuator(
                                .stopStartAfterReboot(
                                    instance: InstanceRef(id: id, region: region),
                                    lastCheck: record.notes.last ?? "checks failed", recordKey: key))))
                }
                try await mutate(
                    PlannedCall("ec2", "StopInstances", region: region, [("InstanceId", id)], if: condition())
                ) {
                    _ = try await ec2.stopInstances([id], force: false, hibernate: nil)
                }
                try await finish(.stop, "StopInstances sent for \(id)")
                return nil
            },
            PlannedSubStep(.stopped) { [self] in
                if !dryRun {
                    do {
                        try await ec2.waitUntilStopped(
                            [id], timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                    } catch let error as WaiterError where error.reason == .timedOut {
                        note(
                            "\(id) did not stop within \(options.instanceWaitTimeout.components.seconds)s: forcing the stop"
                        )
                        try await mutate(
                            PlannedCall(
                                "ec2", "StopInstances", region: region, [("InstanceId", id), ("Force", "true")])
                        ) {
                            _ = try await ec2.stopInstances([id], force: true, hibernate: nil)
                        }
                        try await ec2.waitUntilStopped(
                            [id], timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                    }
                }
                try await finish(.stopped, "\(id) is stopped")
                return nil
            },
        ] + startAndWait(ec2, id, region: region, if: condition(), running: "\(id) is running again") + [
            PlannedSubStep(.eip) { [self] in
                try await reassociateAfterStart(ec2, id)
                return nil
            },
            // Runs on every walk that gets here: the checks decide the outcome.
            PlannedSubStep(.finalCheck, skipWhenDone: []) { [self] in
                if dryRun {
                    return .succeeded(summary: "dry run", newInstance: nil)
                }
                let (ok, detail) = try await waitHealthy(ec2, id, timeout: min(options.restartHealthTimeout, remaining))
                try await finish(.finalCheck, detail)
                if ok {
                    return .succeeded(
                        summary:
                            "instance \(id) in \(region) did not recover from a reboot; it was stopped and started on new hardware, and now \(detail)",
                        newInstance: nil)
                }
                return .failed(
                    "instance \(id) in \(region) was rebooted, then stopped and started, and is still not healthy: \(detail)"
                )
            },
        ]
    }

    /// The `eip` sub-step of the restart: the target's Elastic IP is associated again when the start left
    /// it off the instance.
    private func reassociateAfterStart(_ ec2: any EC2Operations, _ id: String) async throws {
        let region = request.region
        guard let allocation = record.resources.allocationId else {
            return try await finish(.eip, "the target has no Elastic IP: nothing to associate")
        }
        if dryRun {
            record.plannedCalls.append(
                PlannedCall(
                    "ec2", "AssociateAddress", region: region,
                    [("AllocationId", allocation), ("InstanceId", id), ("AllowReassociation", "true")],
                    if: "the Elastic IP is no longer on \(id) after the start"
                ).description)
            return try await finish(.eip, "dry run")
        }
        let address = try await ec2.describeAddresses(publicIps: [], allocationIds: [allocation], filters: []).first
        if address?.instanceId == id {
            return try await finish(.eip, "Elastic IP \(address?.publicIp ?? allocation) is still on \(id)")
        }
        // Never take the address from another running instance: after a re-provision it serves the site
        // from the replacement, and a restart of a stale original (a late or replayed request) must not
        // pull the site back onto it.
        if let other = address?.instanceId,
            let holder = try await ec2.describeInstances(instanceIds: [other], filters: []).first,
            holder.state == .running || holder.state == .pending
        {
            note("Elastic IP \(allocation) is on \(other), which is \(holder.state.rawValue); left there")
            return try await finish(
                .eip,
                "Elastic IP \(address?.publicIp ?? allocation) is on \(other) (\(holder.state.rawValue)"
                    + (holder.tags[RecoveryTags.name] == request.target
                        ? ", another instance of \(request.target)" : "")
                    + "): not taken from it")
        }
        let association = try await mutate(
            PlannedCall(
                "ec2", "AssociateAddress", region: region,
                [("AllocationId", allocation), ("InstanceId", id), ("AllowReassociation", "true")]),
            dryRunValue: ""
        ) {
            try await ec2.associateAddress(allocationId: allocation, instanceId: id, allowReassociation: true)
        }
        note(
            "Elastic IP \(allocation) was on \(address?.instanceId ?? "no instance") after the start; associated it with \(id) again"
        )
        try await finish(.eip, "Elastic IP \(address?.publicIp ?? allocation) associated with \(id) again") {
            $0.associationId = association
            $0.publicIp = address?.publicIp
        }
    }

    /// The restart's compensation: it failed after stopping the instance, which is started again so it is
    /// not left stopped.
    private func startAgain() async throws {
        let id = request.instanceId
        do {
            try await settle(home, id)
            try await mutate(PlannedCall("ec2", "StartInstances", region: request.region, [("InstanceId", id)])) {
                _ = try await home.startInstances([id])
            }
            note("the restart ended early after stopping \(id); StartInstances was sent so it is not left stopped")
            try await finish(.compensated, "StartInstances sent for \(id)")
        } catch {
            try compensationFailed(
                error,
                "the restart ended early after stopping \(id), and starting it again failed too: \(id) is STOPPED")
        }
    }
}
