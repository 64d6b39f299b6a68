import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

/// CloudWatch PutMetricData and GetMetricData: value text, limits, batching and page merging, without a
/// server.
@Suite("CloudWatch encoding and batching")
struct CloudWatchEncodingTests {
    @Test("values go out as the shortest text that reads back as the same Double")
    func valueText() {
        #expect(CloudWatchClient.format(0.1) == "0.1")
        #expect(CloudWatchClient.format(0.1 + 0.2) == "0.30000000000000004")
        #expect(CloudWatchClient.format(42) == "42")
        #expect(CloudWatchClient.format(-0.0) == "0")
        #expect(CloudWatchClient.format(-17) == "-17")
        #expect(CloudWatchClient.format(123.456) == "123.456")
        #expect(CloudWatchClient.format(1e-5) == "1e-05")
        #expect(CloudWatchClient.format(1e20) == "1e+20")
        #expect(CloudWatchClient.format(9_007_199_254_740_991) == "9007199254740991")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let value = Double(bitPattern: generator.next() & 0x7FEF_FFFF_FFFF_FFFF) * (Bool.random() ? 1 : -1)
            #expect(Double(CloudWatchClient.format(value)) == value)
        }
    }

    @Test(
        "values CloudWatch refuses are refused before sending",
        arguments: [
            Double.nan, .infinity, -.infinity, 1e-200, -1e-109, 1e200, 1.2e108,
        ])
    func refusedValues(_ value: Double) async {
        let transport = RecordingTransport { _, _ in (200, "<PutMetricDataResponse/>") }
        let cloudWatch = CloudWatchClient(fakeAWS(transport))
        await #expect(throws: AWSError.self) {
            try await cloudWatch.putMetricData(namespace: "Fleet", data: [MetricDatum(metricName: "m", value: value)])
        }
        #expect(transport.requests.isEmpty)
    }

    @Test("PutMetricData: 2500 points go in requests of 1000, 1000 and 500, each numbered from 1")
    func putBatchesByCount() async throws {
        let transport = RecordingTransport { _, _ in (200, "<PutMetricDataResponse/>") }
        let cloudWatch = CloudWatchClient(fakeAWS(transport))
        let start = Date(timeIntervalSince1970: 1_767_323_045.25)
        let data = (0..<2500).map { i in
            MetricDatum(
                metricName: "probe_latency", value: Double(i) / 10,
                dimensions: [MetricDimension("InstanceId", "i-\(i % 7)")],
                timestamp: start.addingTimeInterval(Double(i)), unit: .milliseconds, storageResolution: i == 0 ? 1 : nil
            )
        }
        #expect(try await cloudWatch.putMetricData(namespace: "Fleet/Probes", data: data) == 3)
        let forms = transport.forms
        #expect(forms.map { $0["Action"] } == ["PutMetricData", "PutMetricData", "PutMetricData"])
        #expect(forms.map { $0.keys.filter { $0.hasSuffix(".MetricName") }.count } == [1000, 1000, 500])
        #expect(forms.allSatisfy { $0["Namespace"] == "Fleet/Probes" })
        let first = forms[0]
        #expect(first["MetricData.member.1.Value"] == "0")
        #expect(first["MetricData.member.2.Value"] == "0.1")
        #expect(first["MetricData.member.1.Timestamp"] == "2026-01-02T03:04:05.250Z")
        #expect(first["MetricData.member.1.Unit"] == "Milliseconds")
        #expect(first["MetricData.member.1.StorageResolution"] == "1")
        #expect(first["MetricData.member.2.StorageResolution"] == nil)
        #expect(first["MetricData.member.1.Dimensions.member.1.Name"] == "InstanceId")
        #expect(first["MetricData.member.1.Dimensions.member.1.Value"] == "i-0")
        #expect(forms[1]["MetricData.member.1.Value"] == "100")  // point 1000 starts the second request
        #expect(forms[2]["MetricData.member.500.Value"] == "249.9")
        #expect(forms[2]["MetricData.member.501.Value"] == nil)
    }

    @Test("PutMetricData: requests also stay under the byte limit; a point alone above it is refused")
    func putBatchesBySize() throws {
        let long = String(repeating: "x", count: 200)
        let data = (0..<50).map {
            MetricDatum(metricName: "m", value: Double($0), dimensions: [MetricDimension("d", long)])
        }
        let batches = try CloudWatchClient.putBatches(namespace: "Fleet", data: data, maxBytes: 2000)
        #expect(batches.count > 5)
        var total = 0
        for batch in batches {
            var full = QueryParameters()
            full.set("Action", "PutMetricData")
            full.set("Version", "2010-08-01")
            full.append(batch)
            #expect(full.formEncoded.utf8.count <= 2000)
            total += batch.items.filter { $0.name.hasSuffix(".MetricName") }.count
        }
        #expect(total == 50)
        let huge = [
            MetricDatum(
                metricName: "m", value: 1, dimensions: [MetricDimension("d", String(repeating: "y", count: 3000))])
        ]
        #expect(throws: CloudWatchClient.InputError.self) {
            try CloudWatchClient.putBatches(namespace: "Fleet", data: huge, maxBytes: 2000)
        }
        let tooManyDimensions = [
            MetricDatum(metricName: "m", value: 1, dimensions: (0...30).map { MetricDimension("d\($0)", "v") })
        ]
        #expect(throws: CloudWatchClient.InputError.self) {
            try CloudWatchClient.putBatches(namespace: "Fleet", data: tooManyDimensions)
        }
    }

    static func metricQuery(_ id: String) -> MetricDataQuery {
        .metric(id: id, Metric(namespace: "Fleet", name: "m"), period: 60, stat: "Average")
    }

    @Test("GetMetricData batches: 1200 queries in 500, 500, 200, in order")
    func batchesByCount() throws {
        let queries = (0..<1200).map { Self.metricQuery("q\($0)") }
        let batches = try CloudWatchClient.queryBatches(queries, limit: 500)
        #expect(batches.map(\.count) == [500, 500, 200])
        #expect(batches.flatMap { $0 }.map(\.id) == queries.map(\.id))
        #expect(try CloudWatchClient.queryBatches([], limit: 500).isEmpty)
    }

    @Test("an expression stays in the batch of the queries it names; METRICS() needs them all")
    func batchesKeepExpressions() throws {
        var queries = (0..<600).map { Self.metricQuery("q\($0)") }
        queries.append(.expression(id: "e1", "100 * (q0 + q550) / q599", label: "ratio"))
        queries.append(.expression(id: "e2", "e1 * 2"))
        let batches = try CloudWatchClient.queryBatches(queries, limit: 500)
        let withE1 = try #require(batches.first { $0.contains { $0.id == "e1" } })
        #expect(Set(["q0", "q550", "q599", "e2"]).isSubset(of: Set(withE1.map(\.id))))
        #expect(batches.allSatisfy { $0.count <= 500 })
        #expect(batches.flatMap { $0 }.count == 602)
        #expect(Set(batches.flatMap { $0 }.map(\.id)).count == 602)

        var all = (0..<10).map { Self.metricQuery("q\($0)") }
        all.append(.expression(id: "s", "SUM(METRICS())"))
        #expect(throws: CloudWatchClient.InputError.self) { try CloudWatchClient.queryBatches(all, limit: 4) }
        #expect(try CloudWatchClient.queryBatches(all, limit: 11).count == 1)
        let duplicate = [Self.metricQuery("a"), Self.metricQuery("a")]
        #expect(throws: CloudWatchClient.InputError.self) { try CloudWatchClient.queryBatches(duplicate, limit: 500) }
        #expect(
            CloudWatchClient.identifiers(in: "100*(errors_5xx+q1)/MAX([q2,q3])") == [
                "100", "errors_5xx", "q1", "MAX", "q2", "q3",
            ])
    }

    static func resultXML(_ id: String, _ points: [(String, String)], status: String = "Complete") -> String {
        "<member><Id>\(id)</Id><Label>\(id) label</Label><Timestamps>"
            + points.map { "<member>\($0.0)</member>" }.joined() + "</Timestamps><Values>"
            + points.map { "<member>\($0.1)</member>" }.joined()
            + "</Values><StatusCode>\(status)</StatusCode></member>"
    }

    @Test("GetMetricData follows NextToken per batch and merges each query's points by id, in query order")
    func pagesMerged() async throws {
        let transport = RecordingTransport { form, _ in
            let firstId = form["MetricDataQueries.member.1.Id"] ?? ""
            let body: String
            switch (firstId, form["NextToken"]) {
            case ("a", nil):
                body =
                    "<MetricDataResults>"
                    + Self.resultXML("a", [("2026-01-01T00:00:00Z", "0.1")], status: "PartialData")
                    + Self.resultXML("b", [("2026-01-01T00:00:00Z", "1e-05")], status: "PartialData")
                    + "</MetricDataResults><NextToken>page2</NextToken><Messages><member><Code>Note</Code><Value>first page</Value></member></Messages>"
            case ("a", "page2"):
                body =
                    "<MetricDataResults>" + Self.resultXML("a", [("2026-01-01T00:01:00Z", "0.30000000000000004")])
                    + Self.resultXML("b", [("2026-01-01T00:01:00.500Z", "-2")]) + "</MetricDataResults>"
            default:
                body =
                    "<MetricDataResults>" + Self.resultXML("c", [("2026-01-01T00:00:00Z", "7")])
                    + "</MetricDataResults>"
            }
            return (
                200, "<GetMetricDataResponse><GetMetricDataResult>\(body)</GetMetricDataResult></GetMetricDataResponse>"
            )
        }
        var cloudWatch = CloudWatchClient(fakeAWS(transport))
        cloudWatch.queriesPerRequest = 2
        let start = Date(timeIntervalSince1970: 1_767_225_600)
        let queries = [
            MetricDataQuery.metric(
                id: "a",
                Metric(namespace: "Fleet", name: "latency", dimensions: [MetricDimension("InstanceId", "i-1")]),
                period: 60,
                stat: "p99", unit: .milliseconds),
            Self.metricQuery("b"),
            .expression(id: "c", "SEARCH('{Fleet,InstanceId} latency', 'Average', 60)", period: 60, label: "all"),
        ]
        let output = try await cloudWatch.getMetricData(
            queries, start: start, end: start.addingTimeInterval(3600), maxDatapoints: 1000)
        #expect(output.requestCount == 3)
        #expect(output.results.map(\.id) == ["a", "b", "c"])
        let a = try #require(output["a"])
        #expect(a.values == [0.1, 0.30000000000000004])
        #expect(a.timestamps == [start, start.addingTimeInterval(60)])
        #expect(a.statusCode == "Complete")
        #expect(a.label == "a label")
        #expect(output["b"]?.values == [1e-05, -2])
        #expect(output["b"]?.points.last?.timestamp == start.addingTimeInterval(60.5))
        #expect(output["c"]?.values == [7])
        #expect(output.messages == [MetricDataMessage(code: "Note", value: "first page")])

        let forms = transport.forms
        #expect(forms.count == 3)
        #expect(forms[0]["NextToken"] == nil && forms[1]["NextToken"] == "page2" && forms[2]["NextToken"] == nil)
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Metric.Namespace"] == "Fleet")
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Metric.MetricName"] == "latency")
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name"] == "InstanceId")
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Stat"] == "p99")
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Unit"] == "Milliseconds")
        #expect(forms[0]["MetricDataQueries.member.1.MetricStat.Period"] == "60")
        #expect(forms[0]["MetricDataQueries.member.3.Id"] == nil)
        #expect(forms[2]["MetricDataQueries.member.1.Expression"]?.hasPrefix("SEARCH(") == true)
        #expect(forms[2]["MetricDataQueries.member.1.Label"] == "all")
        #expect(
            forms[0]["StartTime"] == "2026-01-01T00:00:00.000Z" && forms[0]["EndTime"] == "2026-01-01T01:00:00.000Z")
        #expect(forms[0]["ScanBy"] == "TimestampAscending")
        #expect(forms[0]["MaxDatapoints"] == "1000")
    }

    @Test("a NextToken that repeats ends the call instead of looping")
    func repeatedToken() async throws {
        let transport = RecordingTransport { _, _ in
            (
                200,
                "<GetMetricDataResponse><GetMetricDataResult><MetricDataResults/><NextToken>same</NextToken></GetMetricDataResult></GetMetricDataResponse>"
            )
        }
        let start = Date(timeIntervalSince1970: 1_767_225_600)
        do {
            _ = try await CloudWatchClient(fakeAWS(transport)).getMetricData(
                [Self.metricQuery("a")], start: start, end: start.addingTimeInterval(60))
            Issue.record("expected an error")
        } catch let error as AWSError {
            #expect(error.kind == .invalidResponse)
            #expect(transport.requests.count == 2)
        }
    }

    @Test("CloudWatch error documents (Query protocol) become typed AWSErrors")
    func errors() async throws {
        let transport = RecordingTransport { _, _ in
            (
                400,
                "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>The value 1e999 for parameter MetricData.member.1.Value is invalid.</Message></Error><RequestId>r-cw</RequestId></ErrorResponse>"
            )
        }
        do {
            try await CloudWatchClient(fakeAWS(transport)).putMetricData(
                namespace: "Fleet", data: [MetricDatum(metricName: "m", value: 1)])
            Issue.record("expected an error")
        } catch let error as AWSError {
            #expect(error.code == "InvalidParameterValue")
            #expect(error.requestId == "r-cw")
            #expect(error.kind == .clientError)
        }
        await #expect(throws: AWSError.self) {
            try await CloudWatchClient(fakeAWS(transport)).putMetricData(
                namespace: "AWS/EC2", data: [MetricDatum(metricName: "m", value: 1)])
        }
    }
}

/// CloudWatch against moto: 550 queries over a series go in two GetMetricData calls, counted on the
/// wire. CloudWatch cannot delete data, and every point stays in moto's state (which makes its
/// `data.json`, read by other suites, slower), so the series is kept small: 330 points, sent in
/// requests of 200 to show PutMetricData's batching on a real server too (the 1000 limit itself is
/// tested without a server).
@Suite("CloudWatch against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct CloudWatchIntegrationTests {
    @Test(
        "PutMetricData of 330 points (2 calls of <= 200), GetMetricData with 550 queries (2 calls); every value comes back exactly"
    )
    func seriesRoundTrip() async throws {
        let counting = CountingTransport(testHTTP)
        var cloudWatch = CloudWatchClient(motoAWS(region: "us-east-1", http: counting))
        cloudWatch.datumsPerRequest = 200
        let namespace = "Fleet/Test/\(uniqueName("cw"))"
        // Unique too: moto matches queries with dimensions on name and dimensions only, not namespace.
        let metric = uniqueName("probe_latency")
        // A whole minute in the past hour, so each point falls in its own 60-second period.
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 3600)
        let instances = (0..<110).map { "i-\(String(format: "%04d", $0))" }
        func value(_ instance: Int, _ minute: Int) -> Double {
            minute == 0 ? 0.1 + 0.2 : Double(instance) + Double(minute) / 10 + 0.005
        }
        var data: [MetricDatum] = []
        for (k, instance) in instances.enumerated() {
            for minute in 0..<3 {
                data.append(
                    MetricDatum(
                        metricName: metric, value: value(k, minute),
                        dimensions: [MetricDimension("InstanceId", instance)],
                        timestamp: start.addingTimeInterval(Double(minute * 60)), unit: .milliseconds))
            }
        }
        #expect(try await cloudWatch.putMetricData(namespace: namespace, data: data) == 2)
        #expect(counting.actions.filter { $0 == "PutMetricData" }.count == 2)

        let stats = ["Sum", "Average", "Maximum", "Minimum", "SampleCount"]
        var queries: [MetricDataQuery] = []
        for (k, instance) in instances.enumerated() {
            for (s, stat) in stats.enumerated() {
                queries.append(
                    .metric(
                        id: "q\(k)_\(s)",
                        Metric(
                            namespace: namespace, name: metric, dimensions: [MetricDimension("InstanceId", instance)]),
                        period: 60, stat: stat))
            }
        }
        #expect(queries.count == 550)
        let output = try await cloudWatch.getMetricData(queries, start: start, end: start.addingTimeInterval(180))
        #expect(counting.actions.filter { $0 == "GetMetricData" }.count == 2)
        #expect(output.requestCount == 2)
        #expect(output.results.map(\.id) == queries.map(\.id))
        let expectedTimes = (0..<3).map { start.addingTimeInterval(Double($0 * 60)) }
        for (k, _) in instances.enumerated() {
            let series = (0..<3).map { value(k, $0) }
            for s in 0..<4 {
                let result = try #require(output["q\(k)_\(s)"])
                #expect(result.values == series, "q\(k)_\(s)")
                #expect(result.timestamps == expectedTimes)
                #expect(result.statusCode == "Complete")
            }
            #expect(output["q\(k)_4"]?.values == [1, 1, 1])
        }

        // Metrics are per region.
        let elsewhere = try await cloudWatch.withRegion("us-west-2").getMetricData(
            Array(queries.prefix(1)), start: start, end: start.addingTimeInterval(180))
        #expect(elsewhere["q0_0"]?.values.isEmpty == true)
    }
}
