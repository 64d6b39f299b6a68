import Foundation
import Testing

@testable import AWSClient

/// DynamoDB against moto (AWS_ENDPOINT_URL): a table keyed like the fleet's check history
/// (`instance_id` S, `timestamp` S), conditional writes, exact numbers, Query pages. Each test makes its
/// own table and deletes it.
@Suite("DynamoDB against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct DynamoDBIntegrationTests {
    let counting = CountingTransport(testHTTP)
    let dynamo: DynamoDBClient

    init() {
        dynamo = DynamoDBClient(
            AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyId: "AKIDMOTO", secretAccessKey: "moto-secret")),
                http: counting, environment: ["AWS_ENDPOINT_URL": TestEnvironment.motoEndpoint ?? ""],
                dependencies: SleepRecorder().dependencies))
    }

    /// A fresh checks table, deleted by `cleanup`.
    func makeTable(_ cleanup: Cleanup) async throws -> String {
        let name = uniqueName("fleet-checks")
        let created = try await dynamo.createTable(
            CreateTableInput(
                tableName: name, partitionKey: DynamoKeyAttribute("instance_id", .string),
                sortKey: DynamoKeyAttribute("timestamp", .string), tags: ["run": name]))
        #expect(created.tableName == name)
        await cleanup.add("table \(name)") { [dynamo] in try await dynamo.deleteTable(name) }
        try await dynamo.waitUntilTableActive(name, interval: .seconds(1))
        return name
    }

    @Test("tables: create, wait active, describe, time to live; a table is only visible in its region")
    func tables() async throws {
        try await withCleanup { cleanup in
            let name = try await makeTable(cleanup)
            let table = try await dynamo.describeTable(name)
            #expect(table.status == "ACTIVE")
            #expect(table.partitionKey == "instance_id")
            #expect(table.sortKey == "timestamp")
            #expect(table.tableArn?.contains(":us-east-1:") == true)
            #expect(table.creationDate != nil)

            try await dynamo.updateTimeToLive(tableName: name, attributeName: "expires_at")
            let ttl = try await dynamo.describeTimeToLive(tableName: name)
            #expect(ttl.status == "ENABLED")
            #expect(ttl.attributeName == "expires_at")

            do {
                _ = try await dynamo.withRegion("us-west-2").describeTable(name)
                Issue.record("the table should not exist in us-west-2")
            } catch let error as AWSError {
                #expect(error.code == "ResourceNotFoundException")
                #expect(error.region == "us-west-2")
            }
        }
    }

    @Test("PutItem with attribute_not_exists twice: the second is conditionalCheckFailed, i.e. already written")
    func conditionalPut() async throws {
        try await withCleanup { cleanup in
            let table = try await makeTable(cleanup)
            let item: DynamoItem = [
                "instance_id": "i-0abc", "timestamp": .date(Date(timeIntervalSince1970: 1_767_323_045), as: .iso8601),
                "status": "impaired",
                "expires_at": .date(Date(timeIntervalSince1970: 1_767_323_045 + 86_400), as: .epochSeconds),
            ]
            try await dynamo.putItem(.ifAbsent(tableName: table, item: item, partitionKey: "instance_id"))
            var changed = item
            changed["status"] = "ok"
            do {
                try await dynamo.putItem(.ifAbsent(tableName: table, item: changed, partitionKey: "instance_id"))
                Issue.record("expected conditionalCheckFailed")
            } catch DynamoDBError.conditionalCheckFailed(let failedTable, let operation, let existing, _) {
                #expect(failedTable == table)
                #expect(operation == "PutItem")
                #expect(existing == nil)
            }
            // With the existing item returned, and through the helper that treats it as success.
            let again = try await dynamo.putItemIfAbsent(
                tableName: table, item: changed, partitionKey: "instance_id", returnExistingItem: true)
            #expect(again == .alreadyExists(item))
            let key: DynamoItem = ["instance_id": "i-0abc", "timestamp": item["timestamp"]!]
            #expect(try await dynamo.getItem(tableName: table, key: key, consistentRead: true) == item)
            // A different sort key is a different item: written.
            var later = item
            later["timestamp"] = .date(Date(timeIntervalSince1970: 1_767_323_046), as: .iso8601)
            #expect(
                try await dynamo.putItemIfAbsent(tableName: table, item: later, partitionKey: "instance_id") == .written
            )
            #expect(
                try await dynamo.getItem(tableName: table, key: ["instance_id": "i-0abc", "timestamp": "nope"]) == nil)
        }
    }

    @Test("numbers a Double would mangle round-trip exactly as strings")
    func exactNumbers() async throws {
        try await withCleanup { cleanup in
            let table = try await makeTable(cleanup)
            let texts = [
                "0.1", "0.30000000000000004", "12345678901234567890123456789.123456789", "-1E-130",
                "9.9999999999999999999999999999999999999E+125", "9007199254740993",
                "-0.000000000000000000000000000000000001",
            ]
            var item: DynamoItem = ["instance_id": "i-num", "timestamp": "t0"]
            for (index, text) in texts.enumerated() { item["n\(index)"] = try .number(text) }
            item["set"] = .numberSet(try ["0.1", "0.2", "-1E-130"].map(DynamoNumber.init))
            item["nested"] = ["list": [try .number("0.1"), ["deep": try .number("123.456")]]]
            try await dynamo.putItem(PutItemInput(tableName: table, item: item))
            let read = try #require(
                try await dynamo.getItem(
                    tableName: table, key: ["instance_id": "i-num", "timestamp": "t0"], consistentRead: true))
            for (index, text) in texts.enumerated() {
                #expect(read["n\(index)"]?.numberValue?.text == text)
            }
            #expect(
                Set(read["set"].flatMap { if case .numberSet(let n) = $0 { n.map(\.text) } else { nil } } ?? [])
                    == ["0.1", "0.2", "-1E-130"])
            #expect(read["nested"] == item["nested"])
            #expect(read == item)
        }
    }

    @Test("Query: begins_with on the sort key, both orders, pages of Limit followed to the end")
    func query() async throws {
        try await withCleanup { cleanup in
            let table = try await makeTable(cleanup)
            let start = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z
            // Seven checks of i-1 on two days, two of i-2.
            let hours = [0, 3, 6, 9, 24, 27, 30]
            for hour in hours {
                try await dynamo.putItem(
                    PutItemInput(
                        tableName: table,
                        item: [
                            "instance_id": "i-1",
                            "timestamp": .date(start.addingTimeInterval(Double(hour) * 3600), as: .iso8601),
                            "latency_ms": .number(hour * 10),
                        ]))
            }
            for hour in [1, 2] {
                try await dynamo.putItem(
                    PutItemInput(
                        tableName: table,
                        item: [
                            "instance_id": "i-2",
                            "timestamp": .date(start.addingTimeInterval(Double(hour) * 3600), as: .iso8601),
                        ]))
            }
            let firstDay = QueryInput(
                tableName: table,
                key: DynamoKeyCondition(
                    partitionKey: "instance_id", equals: "i-1", sortKey: "timestamp", .beginsWith("2026-01-01")))
            let page = try await dynamo.query(firstDay)
            #expect(page.items.count == 4)
            #expect(page.lastEvaluatedKey == nil)
            #expect(page.items.compactMap { $0["latency_ms"]?.intValue } == [0, 30, 60, 90])

            var newestFirst = firstDay
            newestFirst.scanIndexForward = false
            #expect(
                try await dynamo.query(newestFirst).items.compactMap { $0["latency_ms"]?.intValue } == [90, 60, 30, 0])

            // Pages of two over all seven checks of i-1.
            var paged = QueryInput(
                tableName: table, key: DynamoKeyCondition(partitionKey: "instance_id", equals: "i-1"), limit: 2)
            let firstPage = try await dynamo.query(paged)
            #expect(firstPage.items.count == 2)
            #expect(firstPage.lastEvaluatedKey?["timestamp"] == firstPage.items.last?["timestamp"])
            let before = counting.actions.filter { $0 == "DynamoDB_20120810.Query" }.count
            paged.consistentRead = true
            let all = try await dynamo.queryAll(paged)
            let queries = counting.actions.filter { $0 == "DynamoDB_20120810.Query" }.count - before
            #expect(all.compactMap { $0["latency_ms"]?.intValue } == hours.map { $0 * 10 })
            #expect(queries >= 4)  // 2 + 2 + 2 + 1 (plus possibly an empty last page)
        }
    }

    @Test("UpdateItem with a condition: applied while it holds, conditionalCheckFailed once it does not")
    func conditionalUpdate() async throws {
        try await withCleanup { cleanup in
            let table = try await makeTable(cleanup)
            let key: DynamoItem = ["instance_id": "i-upd", "timestamp": "incident"]
            try await dynamo.putItem(
                PutItemInput(tableName: table, item: key.merging(["step": "reboot", "attempts": 1]) { $1 }))
            let advance = UpdateItemInput(
                tableName: table, key: key, updateExpression: "SET #step = :next ADD attempts :one",
                conditionExpression: "#step = :expected", expressionAttributeNames: ["#step": "step"],
                expressionAttributeValues: [":next": "stop-start", ":expected": "reboot", ":one": 1],
                returnValues: .allNew)
            let updated = try #require(try await dynamo.updateItem(advance))
            #expect(updated["step"] == "stop-start")
            #expect(updated["attempts"]?.intValue == 2)
            // A second worker doing the same step loses the race.
            do {
                try await dynamo.updateItem(advance)
                Issue.record("expected conditionalCheckFailed")
            } catch DynamoDBError.conditionalCheckFailed(_, let operation, _, _) {
                #expect(operation == "UpdateItem")
            }
            var old = advance
            old.conditionExpression = nil
            old.expressionAttributeValues[":expected"] = nil
            old.updateExpression = "SET #step = :next"
            old.expressionAttributeValues[":one"] = nil
            old.expressionAttributeValues[":next"] = "replace"
            old.returnValues = .updatedOld
            #expect(try await dynamo.updateItem(old) == ["step": "stop-start"])
            try await dynamo.deleteItem(DeleteItemInput(tableName: table, key: key))
            #expect(try await dynamo.getItem(tableName: table, key: key) == nil)
        }
    }
}
