import Foundation

/// Waiters: poll until a resource reaches a state, bounded by `timeout`, every `interval`, using the
/// client's injected clock and sleep. Task cancellation stops them promptly (`CancellationError`).
/// They end early with ``WaiterError`` (`.failureState`) when the awaited state has become unreachable.
/// A resource not visible yet (EC2 is eventually consistent right after creation) counts as pending.
/// Written over ``EC2Operations``, so every driver (``EC2Client``, the in-memory one) is awaited alike.
extension EC2Operations {
    /// Until every instance is `running`. Fails if one is shutting down, terminated or stopping.
    @discardableResult
    public func waitUntilRunning(
        _ instanceIds: [String], timeout: Duration = .seconds(600), interval: Duration = .seconds(15)
    ) async throws -> [EC2Instance] {
        try await waitForInstances(
            instanceIds, target: .running, failures: [.shuttingDown, .terminated, .stopping], timeout: timeout,
            interval: interval)
    }

    /// Until every instance is `stopped`. Fails if one is pending or terminated.
    @discardableResult
    public func waitUntilStopped(
        _ instanceIds: [String], timeout: Duration = .seconds(600), interval: Duration = .seconds(15)
    ) async throws -> [EC2Instance] {
        try await waitForInstances(
            instanceIds, target: .stopped, failures: [.pending, .terminated, .shuttingDown], timeout: timeout,
            interval: interval)
    }

    /// Until every instance is `terminated`.
    @discardableResult
    public func waitUntilTerminated(
        _ instanceIds: [String], timeout: Duration = .seconds(600), interval: Duration = .seconds(15)
    ) async throws -> [EC2Instance] {
        try await waitForInstances(
            instanceIds, target: .terminated, failures: [.pending, .stopping], timeout: timeout, interval: interval)
    }

    /// Until the image is `available`. Fails on `failed`, `invalid`, `error` or `deregistered`.
    @discardableResult
    public func waitUntilImageAvailable(
        _ imageId: String, timeout: Duration = .seconds(1800), interval: Duration = .seconds(15)
    ) async throws -> EC2Image {
        try await waitUntil(
            "image \(imageId) available in \(region)", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<EC2Image> in
            guard
                let image = try await visible({
                    try await describeImages(imageIds: [imageId], owners: [], filters: []).first
                })
            else {
                return .pending(state: "not visible yet")
            }
            switch image.state {
            case "available": return .done(image)
            case "failed", "invalid", "error", "deregistered": return .failed(state: image.state)
            default: return .pending(state: image.state)
            }
        }
    }

    /// Until the snapshot is `completed` (copies across regions take minutes to hours). Fails on `error`.
    @discardableResult
    public func waitUntilSnapshotCompleted(
        _ snapshotId: String, timeout: Duration = .seconds(7200), interval: Duration = .seconds(30)
    ) async throws -> EC2Snapshot {
        try await waitUntil(
            "snapshot \(snapshotId) completed in \(region)", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<EC2Snapshot> in
            guard
                let snapshot = try await visible({
                    try await describeSnapshots(snapshotIds: [snapshotId], ownerIds: [], filters: []).first
                })
            else { return .pending(state: "not visible yet") }
            switch snapshot.state {
            case "completed": return .done(snapshot)
            case "error": return .failed(state: "error")
            default: return .pending(state: "\(snapshot.state) \(snapshot.progress ?? "")")
            }
        }
    }

    /// Until the volume is `available` (created, or detached). Fails on `error` or `deleted`.
    @discardableResult
    public func waitUntilVolumeAvailable(
        _ volumeId: String, timeout: Duration = .seconds(600), interval: Duration = .seconds(10)
    ) async throws -> EC2Volume {
        try await waitUntil(
            "volume \(volumeId) available in \(region)", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<EC2Volume> in
            guard
                let volume = try await visible({ try await describeVolumes(volumeIds: [volumeId], filters: []).first })
            else {
                return .pending(state: "not visible yet")
            }
            switch volume.state {
            case "available": return .done(volume)
            case "error", "deleting", "deleted": return .failed(state: volume.state)
            default: return .pending(state: volume.state)
            }
        }
    }

    /// Until `volumeId` is in use by `instanceId` with its attachment `attached`. Fails on `error`.
    @discardableResult
    public func waitUntilVolumeAttached(
        _ volumeId: String, to instanceId: String, timeout: Duration = .seconds(600), interval: Duration = .seconds(10)
    ) async throws -> EC2Volume {
        try await waitUntil(
            "volume \(volumeId) attached to \(instanceId)", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<EC2Volume> in
            guard let found = try await describeVolumes(volumeIds: [volumeId], filters: []).first else {
                return .pending(state: "not visible")
            }
            if found.state == "error" { return .failed(state: "error") }
            let attachment = found.attachments.first { $0.instanceId == instanceId }
            return attachment?.state == "attached"
                ? .done(found) : .pending(state: "\(found.state) \(attachment?.state ?? "-")")
        }
    }

    private func waitForInstances(
        _ instanceIds: [String], target: InstanceStateName, failures: Set<InstanceStateName>, timeout: Duration,
        interval: Duration
    ) async throws -> [EC2Instance] {
        let what =
            "instance\(instanceIds.count == 1 ? "" : "s") \(instanceIds.joined(separator: ", ")) \(target) in \(region)"
        return try await waitUntil(what, timeout: timeout, interval: interval, dependencies: dependencies) {
            () -> WaiterStep<[EC2Instance]> in
            guard
                let instances = try await visible({ try await describeInstances(instanceIds: instanceIds, filters: []) }
                ),
                Set(instances.map(\.instanceId)).isSuperset(of: instanceIds)
            else { return .pending(state: "not visible yet") }
            let summary = instances.map { "\($0.instanceId) \($0.state)" }.joined(separator: ", ")
            if let failed = instances.first(where: { failures.contains($0.state) }) {
                return .failed(state: "\(failed.instanceId) \(failed.state)")
            }
            return instances.allSatisfy { $0.state == target } ? .done(instances) : .pending(state: summary)
        }
    }

    /// The answer of `describe`, or nil when the resource is not found (yet).
    private func visible<T>(_ describe: () async throws -> T?) async throws -> T? {
        do {
            return try await describe()
        } catch let error as AWSError
            where error.code.map({ $0.hasSuffix(".NotFound") || $0 == "InvalidAMIID.Unavailable" }) == true
        {
            return nil
        }
    }
}
