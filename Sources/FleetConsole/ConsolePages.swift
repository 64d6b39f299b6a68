import FleetControl
import FleetWorkers
import Foundation

/// The console's HTML: server-rendered, no external assets, no inline script (the page's Content Security
/// Policy forbids it). The parts marked `data-live` are fetched again every few seconds by /console.js.
/// Every value from the fleet is escaped; nothing secret is on any page (no webhook, key or password ever
/// reaches the status or history the pages are made from).
enum ConsolePages {
    static func escape(_ text: String) -> String { NoticeFormatter.html(text) }

    static func pathComponent(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// A name typed into the login form, for a log line: bounded, printable.
    static func loggable(_ text: String) -> String {
        String(text.prefix(64).map { $0.isLetter || $0.isNumber || "._@-".contains($0) ? $0 : "?" })
    }

    static let style = """
        body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
        header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;justify-content:space-between;align-items:center}
        header a{color:#fff;text-decoration:none;font-weight:600}main{padding:1em 1.2em}
        table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;font-size:.92em;vertical-align:top}
        th{background:#eef0f3}.down{color:#b3261e;font-weight:600}.up{color:#1e7b34}.state-monitoring{color:#1e7b34}
        .banner{padding:.6em 1em;margin-bottom:1em;border-radius:4px}.engaged{background:#fbe4e2;border:1px solid #b3261e}.released{background:#e6f2e8}
        form.inline{display:inline-block;margin:0 .3em .3em 0}button{padding:.35em .8em;cursor:pointer}
        .readonly{color:#6b7280;font-style:italic}pre{background:#fff;padding:1em;white-space:pre-wrap}
        dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;background:#fff;padding:.8em}dt{font-weight:600}
        """

    static func page(_ title: String, _ body: String, viewer: ConsoleApp.Viewer?) -> String {
        var who = ""
        if let viewer {
            who =
                "<span>\(escape(viewer.name))\(viewer.isOperator ? " (operator)" : " (read-only)") "
                + "<form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"\(viewer.csrf)\">"
                + "<button type=\"submit\">Log out</button></form></span>"
        }
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
            <title>\(escape(title))</title><link rel="stylesheet" href="/console.css"><script src="/console.js" defer></script></head>
            <body><header><a href="/">ec2-recovery-fleet</a>\(who)</header><main>\(body)</main></body></html>
            """
    }

    static func login(error: String?) -> String {
        page(
            "Log in",
            """
            <h1>Log in</h1>\(error.map { "<p class=\"down\" id=\"login-error\">\(escape($0))</p>" } ?? "")
            <form method="post" action="/login"><p><label>Name <input name="name" autocomplete="username" required></label></p>
            <p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
            <p><button type="submit">Log in</button></p></form>
            """, viewer: nil)
    }

    static func problem(_ text: String, viewer: ConsoleApp.Viewer) -> String {
        page(
            "Problem", "<p class=\"down\">\(escape(text))</p><p><a href=\"/\">Back to the fleet</a></p>", viewer: viewer
        )
    }

    static func hidden(_ viewer: ConsoleApp.Viewer) -> String {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(viewer.csrf)\">"
    }

    static func brakeBanner(_ brake: BrakeStatus, viewer: ConsoleApp.Viewer) -> String {
        var html: String
        if brake.engaged {
            html =
                "<div class=\"banner engaged\" id=\"brake\"><strong>Fleet brake ENGAGED</strong>"
                + (brake.since.map { " since \(TimeInput.iso($0))" } ?? "")
                + (brake.trigger.map { " (\(escape($0))\(brake.by.map { " by \(escape($0))" } ?? ""))" } ?? "")
                + ": no destructive step runs." + (brake.detail.map { " \(escape($0))" } ?? "")
            if viewer.isOperator {
                html +=
                    " <form class=\"inline\" method=\"post\" action=\"/brake\">\(hidden(viewer))<input type=\"hidden\" name=\"action\" value=\"release\"><button type=\"submit\" name=\"button\" value=\"brake-release\">Release the brake</button></form>"
            }
        } else {
            html =
                "<div class=\"banner released\" id=\"brake\">Fleet brake released: \(brake.targetsInOutage.count) of \(brake.fleetSize) targets in outage."
            if viewer.isOperator {
                html +=
                    " <form class=\"inline\" method=\"post\" action=\"/brake\">\(hidden(viewer))<input type=\"hidden\" name=\"action\" value=\"engage\"><input name=\"reason\" placeholder=\"reason\"><button type=\"submit\" name=\"button\" value=\"brake-engage\">Engage the brake</button></form>"
            }
        }
        return html + "</div>"
    }

    static func fleetLive(_ report: StatusReport, viewer: ConsoleApp.Viewer) -> String {
        var html = brakeBanner(report.brake, viewer: viewer)
        if let error = report.discoveryError {
            html += "<p class=\"down\">Discovery failed (stored state only): \(escape(error))</p>"
        }
        html +=
            "<table id=\"targets\"><tr><th>Target</th><th>State</th><th>Outages</th><th>Instance</th><th>Region</th><th>Last probe</th><th>Lock</th><th>Hold / approval</th><th>Next step</th></tr>"
        for t in report.targets {
            let probe =
                t.lastProbeAt.map {
                    "<span class=\"\(t.lastProbeHealthy == false ? "down" : "up")\">\(t.lastProbeHealthy == false ? "DOWN" : "up")</span> \(escape(TimeInput.relative($0, now: report.at)))"
                } ?? "not yet"
            let state = escape(t.state)
            html +=
                "<tr data-target=\"\(escape(t.target))\"><td><a href=\"/targets/\(pathComponent(t.target))\">\(escape(t.target))</a></td>"
                + "<td class=\"state-\(state)\">\(state)</td><td>\(t.outageCount)</td><td>\(escape(t.instanceId ?? "-"))</td>"
                + "<td>\(escape(t.region ?? "-"))</td><td>\(probe)</td><td>\(escape(t.lockHolder ?? "-"))</td>"
                + "<td>\(escape(t.hold ?? "-"))</td><td>\(t.nextStepAt.map { escape(TimeInput.relative($0, now: report.at)) } ?? "-")</td></tr>"
        }
        html += "</table>"
        if report.targets.isEmpty {
            html += "<p>No targets: nothing tagged AutoRecovery=enabled and no stored state.</p>"
        }
        return html + "<p class=\"readonly\">Updated \(TimeInput.iso(report.at)).</p>"
    }

    static func fleetPage(_ live: String, viewer: ConsoleApp.Viewer) -> String {
        page("Fleet", "<h1>Fleet</h1><div data-live=\"/fleet/live\">\(live)</div>", viewer: viewer)
    }

    static func targetLive(
        _ t: TargetStatus, brake: BrakeStatus, timeline: HistoryReport?, historyError: String?, now: Date,
        incident: String? = nil
    ) -> String {
        var facts: [(String, String)] = [
            ("State", t.state), ("Incident", t.incidentId ?? "-"), ("Outages (window)", String(t.outageCount)),
            ("Instance", t.instanceId ?? "-"), ("Region", t.region ?? "-"),
            (
                "Last probe",
                t.lastProbeAt.map {
                    "\(t.lastProbeHealthy == false ? "DOWN" : "up") \(TimeInput.relative($0, now: now))\(t.lastProbeDetail.map { ": \($0)" } ?? "")"
                } ?? "not yet"
            ),
            ("Lock", t.lockHolder.map { "\($0)\(t.lockFencingToken.map { ", fence \($0)" } ?? "")" } ?? "free"),
            ("Hold / approval", t.hold ?? "-"),
            ("Next step", t.nextStepAt.map { TimeInput.iso($0) } ?? "-"),
            ("Fleet brake", brake.engaged ? "ENGAGED" : "released"),
        ]
        if !t.discovered { facts.append(("Discovery", "not discovered now (stored state only)")) }
        var html =
            "<dl id=\"facts\">"
            + facts.map {
                "<dt>\(escape($0.0))</dt><dd id=\"fact-\(pathComponent($0.0.lowercased()))\">\(escape($0.1))</dd>"
            }
            .joined() + "</dl>"
        let base = "/targets/\(pathComponent(t.target))"
        var entries = timeline?.entries ?? []
        if let incident {
            entries = IncidentTimeline.rows(entries, incident: incident, open: incident == t.incidentId)
            html +=
                "<h2>Timeline of incident \(escape(incident))</h2><p><a href=\"\(base)\">All of \(escape(t.target))'s history</a></p>"
        } else {
            let incidents = IncidentTimeline.incidents(entries)
            if !incidents.isEmpty {
                html +=
                    "<p id=\"incidents\">Incidents: "
                    + incidents.map { "<a href=\"\(base)/incidents/\(pathComponent($0))\">\(escape($0))</a>" }
                    .joined(separator: ", ") + "</p>"
            }
            html += "<h2>Timeline</h2>"
        }
        if let historyError {
            html += "<p class=\"down\">History could not be read: \(escape(historyError))</p>"
        } else if let timeline, !entries.isEmpty {
            if timeline.truncated { html += "<p class=\"readonly\">Older rows are left out.</p>" }
            html += "<table id=\"timeline\"><tr><th>Time (UTC)</th><th>Who</th><th>What</th><th>Why</th></tr>"
            for e in entries {
                html +=
                    "<tr><td>\(escape(String(e.occurredAt.prefix(19)).replacingOccurrences(of: "T", with: " ")))</td>"
                    + "<td>\(escape(e.who))</td><td>\(escape(e.what))</td><td>\(escape(e.why == e.what ? "" : e.why))</td></tr>"
            }
            html += "</table>"
        } else {
            html += "<p>No history yet.</p>"
        }
        return html
    }

    /// The target's own maintenance windows, and for operators the forms that change them.
    static func maintenanceSection(_ t: TargetStatus, _ windows: Result<String?, any Error>, viewer: ConsoleApp.Viewer)
        -> String
    {
        var html = "<h2>Maintenance windows</h2>"
        let current: String?
        switch windows {
        case .success(let value):
            current = value
            html +=
                "<p id=\"maintenance-current\">\(value.map { "<code>\(escape($0))</code>" } ?? "None of its own.") The fleet-wide MAINTENANCE_WINDOWS apply too; during a window no destructive step runs and no outage is paged.</p>"
        case .failure(let error):
            current = nil
            html += "<p class=\"readonly\" id=\"maintenance-current\">\(escape("\(error)"))</p>"
            if error is ConsoleBackendNoTable { return html }
        }
        guard viewer.isOperator else { return html }
        let action = "/targets/\(pathComponent(t.target))/maintenance"
        return html
            + "<form class=\"inline\" method=\"post\" action=\"\(action)\">\(hidden(viewer))<input type=\"hidden\" name=\"action\" value=\"for_hours\">"
            + "<select name=\"hours\"><option value=\"1\">1 h</option><option value=\"2\">2 h</option><option value=\"4\">4 h</option><option value=\"8\">8 h</option><option value=\"24\">24 h</option></select> "
            + "<button type=\"submit\" id=\"button-maintenance-now\">Maintenance from now</button></form>"
            + "<form method=\"post\" action=\"\(action)\">\(hidden(viewer))<input type=\"hidden\" name=\"action\" value=\"set\">"
            + "<input type=\"hidden\" name=\"previous\" value=\"\(escape(current ?? ""))\">"
            + "<p><label>Windows (JSON, as in docs/escalation.md; empty removes them)<br><textarea name=\"windows\" rows=\"3\" cols=\"90\">\(escape(current ?? ""))</textarea></label></p>"
            + "<button type=\"submit\" id=\"button-maintenance-set\">Save the windows</button></form>"
    }

    static func maintenanceSaved(target: String, windows: String?, back: String, viewer: ConsoleApp.Viewer) -> String {
        page(
            "Maintenance",
            "<h1>Maintenance windows of \(escape(target))</h1><p id=\"answer-status\">written</p><pre id=\"answer\">\(escape(windows ?? "(removed)"))</pre><p>The workers apply them at their next discovery.</p><p><a href=\"\(back)\">Back</a></p>",
            viewer: viewer)
    }

    static func targetPage(
        _ t: TargetStatus, live: String, maintenance: Result<String?, any Error>, viewer: ConsoleApp.Viewer,
        incident: String? = nil
    ) -> String {
        let liveURL =
            "/targets/\(pathComponent(t.target))" + (incident.map { "/incidents/\(pathComponent($0))" } ?? "") + "/live"
        var actions: String
        if let incident, incident != t.incidentId {
            // The buttons act on the target's current incident: not offered on the page of another one.
            actions =
                "<p class=\"readonly\" id=\"actions\">This incident is over; commands act on the target's current state: <a href=\"/targets/\(pathComponent(t.target))\">\(escape(t.target))</a>.</p>"
        } else if viewer.isOperator {
            let action = "/targets/\(pathComponent(t.target))/commands"
            // The incident on the page when it was loaded: a button pressed after another one opened is refused.
            let incidentField =
                t.incidentId.map { "<input type=\"hidden\" name=\"incident\" value=\"\(escape($0))\">" } ?? ""
            func button(_ command: String, _ label: String, extra: String = "") -> String {
                "<form class=\"inline\" method=\"post\" action=\"\(action)\">\(hidden(viewer))<input type=\"hidden\" name=\"command\" value=\"\(command)\">\(incidentField)\(extra)<button type=\"submit\" id=\"button-\(command)\">\(label)</button></form>"
            }
            actions =
                "<div id=\"actions\">" + button("approve", "Approve the pending step") + button("ack", "Acknowledge")
                + button(
                    "hold", "Hold",
                    extra:
                        "<select name=\"hours\"><option value=\"1\">1 h</option><option value=\"4\">4 h</option><option value=\"12\">12 h</option><option value=\"24\">24 h</option></select> <input name=\"until\" size=\"24\" placeholder=\"or until: 2027-01-15T06:00:00Z, 90m\"> "
                )
                + button("resume", "Resume") + button("reset", "Reset the outage count")
                + button("abort", "Abort the running step")
                + "</div>"
        } else {
            actions =
                "<p class=\"readonly\" id=\"actions\">Read-only: \(escape(viewer.name)) is not on OPERATORS.</p>"
        }
        return page(
            t.target,
            "<h1>\(escape(t.target))</h1>\(actions)<div data-live=\"\(liveURL)\">\(live)</div>"
                + maintenanceSection(t, maintenance, viewer: viewer),
            viewer: viewer)
    }

    static func answer(_ result: CommandResult, back: String, viewer: ConsoleApp.Viewer) -> String {
        page(
            "Answer",
            "<h1>\(escape(result.command)) \(escape(result.target ?? ""))</h1><p id=\"answer-status\">\(escape(result.status.rawValue))</p><pre id=\"answer\">\(escape(result.render()))</pre><p><a href=\"\(back)\">Back</a></p>",
            viewer: viewer)
    }

    /// Fetches each `data-live` element's URL every 3 s and puts the answer in place: live updates
    /// without reloading, and nothing to run if the page is read with scripts off.
    static let script = """
        document.querySelectorAll('[data-live]').forEach(function (el) {
          setInterval(function () {
            fetch(el.getAttribute('data-live'), {credentials: 'same-origin'}).then(function (r) {
              if (r.ok && r.headers.get('Content-Type').indexOf('text/html') === 0) { return r.text(); }
              return null;
            }).then(function (html) { if (html !== null) { el.innerHTML = html; } }).catch(function () {});
          }, 3000);
        });
        """
}
