import Metrics

/// Every metric the fleet emits, with its label names, in one place (the RediStack `RedisMetrics` idea):
/// a call site names the metric and fills in typed labels, so a label cannot be misspelt or a dimension
/// forgotten, and the Grafana dashboard check (scripts/check-dashboard-metrics.py) reads the names here.
/// Prometheus names: counters as written (swift-prometheus adds no `_total`), timers as histograms.
public enum FleetMetrics {
    /// Instances left out of discovery because their target name is unusable (too long, control characters).
    public static let targetsRefused = Counter(label: "recovery_targets_refused_total")

    // MARK: Every consumer

    /// What happened to a message: `acked`, `dead_lettered`, `requeued`, or `retried` (a transient failure
    /// retried in place; counted per attempt).
    public static func messagesHandled(queue: String, result: String) -> Counter {
        Counter(label: "recovery_messages_handled_total", dimensions: [("queue", queue), ("result", result)])
    }
    /// From a message's sending to its handling.
    public static func queueLag(queue: String) -> Timer {
        Timer(label: "recovery_queue_lag_seconds", dimensions: [("queue", queue)])
    }
    /// From a message's arrival here to its ack (or dead-lettering or requeue): the handler's time,
    /// including its retries in place.
    public static func handlingTime(queue: String) -> Timer {
        Timer(label: "recovery_message_handling_seconds", dimensions: [("queue", queue)])
    }
    /// Messages refused because their sender may not send their type (docs/security.md).
    public static func unauthorizedMessages(queue: String, type: String) -> Counter {
        Counter(label: "recovery_unauthorized_messages_total", dimensions: [("queue", queue), ("type", type)])
    }
    /// Trouble a worker survived: `worker` and what it was doing (`publish`, `discovery`, `claim`, …).
    public static func errors(worker: String, kind: String) -> Counter {
        Counter(label: "recovery_errors_total", dimensions: [("worker", worker), ("kind", kind)])
    }
    /// Targets known after the latest discovery (probe and decision).
    public static var targets: Gauge { Gauge(label: "recovery_targets") }
    /// Instance-config items skipped as malformed.
    public static var targetConfigSkipped: Counter { Counter(label: "recovery_target_config_skipped_total") }

    // MARK: Probe

    public static func probes(result: String) -> Counter {
        Counter(label: "recovery_probes_total", dimensions: [("result", result)])
    }
    /// Targets due at the probe's last look that it had no room for (PROBE_MAX_IN_FLIGHT, or
    /// PROBE_MAX_UNCONFIRMED reached): they wait for a later look. Above zero for long, the replica cannot
    /// keep up.
    public static var probesDueWaiting: Gauge { Gauge(label: "recovery_probe_due_waiting") }
    /// Observations of this probe replica's health checks that the broker has not yet confirmed
    /// (PROBE_MAX_UNCONFIRMED): near the bound, the broker is slow to confirm.
    public static var probesUnconfirmed: Gauge { Gauge(label: "recovery_probe_unconfirmed") }
    public static var probeDuration: Timer { Timer(label: "recovery_probe_duration_seconds") }
    /// With a canary configured: 1 while it answers, 0 while this prober's checks do not count.
    public static var probeCanaryOK: Gauge { Gauge(label: "recovery_probe_canary_ok") }

    // MARK: Decision

    /// `accepted`, `rejected` or `unauthorized`.
    public static func commands(result: String) -> Counter {
        Counter(label: "recovery_commands_total", dimensions: [("result", result)])
    }
    public static var decisions: Counter { Counter(label: "recovery_decisions_total") }
    public static var decisionConflicts: Counter { Counter(label: "recovery_decision_conflicts_total") }
    public static var outages: Counter { Counter(label: "recovery_outages_total") }
    public static var brakeEngaged: Gauge { Gauge(label: "recovery_brake_engaged") }
    public static func messagesPublished(type: String) -> Counter {
        Counter(label: "recovery_messages_published_total", dimensions: [("type", type)])
    }

    // MARK: Actuator

    public static func stepsStarted(step: String) -> Counter {
        Counter(label: "recovery_actuator_steps_started_total", dimensions: [("step", step)])
    }
    public static func steps(step: String, status: String) -> Counter {
        Counter(label: "recovery_actuator_steps_total", dimensions: [("step", step), ("status", status)])
    }
    public static var actuatorRequeued: Counter { Counter(label: "recovery_actuator_requeued_total") }
    public static var actuatorRepublished: Counter { Counter(label: "recovery_actuator_republished_total") }
    public static var leasesLost: Counter { Counter(label: "recovery_actuator_leases_lost_total") }
    public static var drPreflightFailing: Gauge { Gauge(label: "recovery_dr_preflight_failing") }

    // MARK: Notifier

    public static func notifications(channel: String, result: String) -> Counter {
        Counter(label: "recovery_notifications_total", dimensions: [("channel", channel), ("result", result)])
    }
    public static func routingFallbacks(reason: String) -> Counter {
        Counter(label: "recovery_notify_routing_fallbacks_total", dimensions: [("reason", reason)])
    }

    // MARK: Recorder

    /// `written`, `duplicate` or `failed`.
    public static func historyRows(type: String, result: String) -> Counter {
        Counter(label: "recovery_history_rows_total", dimensions: [("type", type), ("result", result)])
    }
    public static func actionsExecuted(status: String) -> Counter {
        Counter(label: "recovery_actions_executed_total", dimensions: [("status", status)])
    }
    public static var predictionsRecorded: Counter { Counter(label: "recovery_predictions_total") }
    public static var highConfidencePredictionsRecorded: Counter {
        Counter(label: "recovery_high_confidence_predictions_total")
    }
    public static var successRate: Gauge { Gauge(label: "recovery_success_rate") }

    // MARK: Predictor

    public static var predictorTargets: Gauge { Gauge(label: "recovery_predictor_targets") }
    public static var predictorEvaluations: Counter { Counter(label: "recovery_predictor_evaluations_total") }
    public static var getMetricDataRequests: Counter {
        Counter(label: "recovery_predictor_get_metric_data_requests_total")
    }
    public static func predictions(kind: String) -> Counter {
        Counter(label: "recovery_predictor_predictions_total", dimensions: [("kind", kind)])
    }
    public static func highConfidencePredictions(kind: String) -> Counter {
        Counter(label: "recovery_predictor_high_confidence_total", dimensions: [("kind", kind)])
    }
}
