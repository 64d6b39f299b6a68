import Foundation

/// Typed DynamoDB calls on the core ``AWSClient`` (JSON 1.0, API 2012-08-10).
///
/// One instance per region: `dynamo.withRegion("us-west-2")` for the DR region. Values are
/// ``DynamoValue``s, numbers exact decimal text. A false condition throws
/// ``DynamoDBError/conditionalCheckFailed(table:operation:existingItem:requestId:)``; every other failure
/// is an ``AWSError`` (or `CancellationError`).
public struct DynamoDBClient: Sendable {
    public let aws: AWSClient

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> DynamoDBClient { DynamoDBClient(aws.withRegion(region)) }

    // MARK: Items

    /// PutItem. Returns the replaced item when `returnOldItem` is set and there was one.
    @discardableResult
    public func putItem(_ input: PutItemInput) async throws -> DynamoItem? {
        let request = DynamoWire.PutItem(
            TableName: input.tableName, Item: input.item, ConditionExpression: input.conditionExpression,
            ExpressionAttributeNames: input.expressionAttributeNames.nonEmpty,
            ExpressionAttributeValues: input.expressionAttributeValues.nonEmpty,
            ReturnValues: input.returnOldItem ? DynamoReturnValues.allOld.rawValue : nil,
            ReturnValuesOnConditionCheckFailure: input.returnItemOnConditionFailure ? "ALL_OLD" : nil)
        let output = try await call(
            "PutItem", table: input.tableName, request, DynamoWire.Attributes.self,
            keepErrorDocument: input.returnItemOnConditionFailure)
        return output.Attributes
    }

    /// PutItem guarded by `attribute_not_exists` on the partition key: `.written`, or `.alreadyExists`
    /// (with the current item when `returnExistingItem`) when an item with that key is there. Use it for
    /// writes that may be repeated (a redelivered message, a retried step).
    public func putItemIfAbsent(
        tableName: String, item: DynamoItem, partitionKey: String, returnExistingItem: Bool = false
    ) async throws -> PutIfAbsentResult {
        do {
            try await putItem(
                .ifAbsent(
                    tableName: tableName, item: item, partitionKey: partitionKey, returnExistingItem: returnExistingItem
                ))
            return .written
        } catch DynamoDBError.conditionalCheckFailed(_, _, let existing, _) {
            return .alreadyExists(existing)
        }
    }

    /// UpdateItem. Returns the attributes `returnValues` asks for (nil for `.none`).
    @discardableResult
    public func updateItem(_ input: UpdateItemInput) async throws -> DynamoItem? {
        let request = DynamoWire.UpdateItem(
            TableName: input.tableName, Key: input.key, UpdateExpression: input.updateExpression,
            ConditionExpression: input.conditionExpression,
            ExpressionAttributeNames: input.expressionAttributeNames.nonEmpty,
            ExpressionAttributeValues: input.expressionAttributeValues.nonEmpty,
            ReturnValues: input.returnValues == .none ? nil : input.returnValues.rawValue,
            ReturnValuesOnConditionCheckFailure: input.returnItemOnConditionFailure ? "ALL_OLD" : nil)
        let output = try await call(
            "UpdateItem", table: input.tableName, request, DynamoWire.Attributes.self,
            keepErrorDocument: input.returnItemOnConditionFailure)
        return output.Attributes
    }

    /// GetItem by full primary key; nil when there is no such item. `consistentRead` reads the latest
    /// write (twice the read cost).
    public func getItem(
        tableName: String, key: DynamoItem, consistentRead: Bool = false, projectionExpression: String? = nil,
        expressionAttributeNames: [String: String] = [:]
    ) async throws -> DynamoItem? {
        let request = DynamoWire.GetItem(
            TableName: tableName, Key: key, ConsistentRead: consistentRead ? true : nil,
            ProjectionExpression: projectionExpression, ExpressionAttributeNames: expressionAttributeNames.nonEmpty)
        return try await call("GetItem", table: tableName, request, DynamoWire.GetItemOutput.self).Item
    }

    /// DeleteItem, optionally conditional. Returns nothing; a false condition throws.
    public func deleteItem(_ input: DeleteItemInput) async throws {
        let request = DynamoWire.DeleteItem(
            TableName: input.tableName, Key: input.key, ConditionExpression: input.conditionExpression,
            ExpressionAttributeNames: input.expressionAttributeNames.nonEmpty,
            ExpressionAttributeValues: input.expressionAttributeValues.nonEmpty)
        _ = try await call("DeleteItem", table: input.tableName, request, DynamoWire.Attributes.self)
    }

    /// Query: one page, starting at `input.exclusiveStartKey`.
    public func query(_ input: QueryInput) async throws -> QueryPage {
        let request = DynamoWire.Query(
            TableName: input.tableName, IndexName: input.indexName,
            KeyConditionExpression: input.keyConditionExpression,
            FilterExpression: input.filterExpression, ProjectionExpression: input.projectionExpression,
            ExpressionAttributeNames: input.expressionAttributeNames.nonEmpty,
            ExpressionAttributeValues: input.expressionAttributeValues.nonEmpty,
            ScanIndexForward: input.scanIndexForward ? nil : false, Limit: input.limit,
            ExclusiveStartKey: input.exclusiveStartKey, ConsistentRead: input.consistentRead ? true : nil)
        let output = try await call("Query", table: input.tableName, request, DynamoWire.QueryOutput.self)
        let items = output.Items ?? []
        return QueryPage(
            items: items, lastEvaluatedKey: output.LastEvaluatedKey.flatMap { $0.isEmpty ? nil : $0 },
            count: output.Count ?? items.count, scannedCount: output.ScannedCount ?? items.count)
    }

    /// Query, following `LastEvaluatedKey` through every page (`limit` is the page size). Stops with an
    /// `.invalidResponse` error if a page key repeats, and after `maxPages` pages.
    public func queryAll(_ input: QueryInput, maxPages: Int = 10_000) async throws -> [DynamoItem] {
        var items: [DynamoItem] = []
        var page = input
        var seen: Set<DynamoItem> = []
        for _ in 0..<maxPages {
            let result = try await query(page)
            items += result.items
            guard let next = result.lastEvaluatedKey else { return items }
            guard seen.insert(next).inserted else {
                throw aws.invalidResponse(
                    .dynamoDB, "Query", "the same LastEvaluatedKey came back twice; stopping to avoid a loop")
            }
            page.exclusiveStartKey = next
        }
        throw aws.invalidRequest(
            .dynamoDB, "Query",
            "more than \(maxPages) pages on table \(input.tableName); narrow the query or raise maxPages")
    }

    /// Scan: every item of a table, following `LastEvaluatedKey` through every page (`limit` is the page
    /// size). Stops with an `.invalidResponse` error if a page key repeats, and after `maxPages` pages.
    /// For small tables (per-target configuration); large tables want Query.
    public func scanAll(
        tableName: String, limit: Int? = nil, consistentRead: Bool = false, maxPages: Int = 10_000
    ) async throws -> [DynamoItem] {
        var items: [DynamoItem] = []
        var start: DynamoItem? = nil
        var seen: Set<DynamoItem> = []
        for _ in 0..<maxPages {
            let request = DynamoWire.Scan(
                TableName: tableName, Limit: limit, ExclusiveStartKey: start,
                ConsistentRead: consistentRead ? true : nil)
            let output = try await call("Scan", table: tableName, request, DynamoWire.QueryOutput.self)
            items += output.Items ?? []
            guard let next = output.LastEvaluatedKey, !next.isEmpty else { return items }
            guard seen.insert(next).inserted else {
                throw aws.invalidResponse(
                    .dynamoDB, "Scan", "the same LastEvaluatedKey came back twice; stopping to avoid a loop")
            }
            start = next
        }
        throw aws.invalidRequest(.dynamoDB, "Scan", "more than \(maxPages) pages on table \(tableName); raise maxPages")
    }

    // MARK: Tables

    public func createTable(_ input: CreateTableInput) async throws -> DynamoTableDescription {
        var attributes = [
            DynamoWire.AttributeDefinition(
                AttributeName: input.partitionKey.name, AttributeType: input.partitionKey.type)
        ]
        var schema = [DynamoWire.KeySchemaElement(AttributeName: input.partitionKey.name, KeyType: "HASH")]
        if let sortKey = input.sortKey {
            attributes.append(DynamoWire.AttributeDefinition(AttributeName: sortKey.name, AttributeType: sortKey.type))
            schema.append(DynamoWire.KeySchemaElement(AttributeName: sortKey.name, KeyType: "RANGE"))
        }
        var request = DynamoWire.CreateTable(
            TableName: input.tableName, AttributeDefinitions: attributes, KeySchema: schema,
            BillingMode: "PAY_PER_REQUEST",
            ProvisionedThroughput: nil,
            Tags: input.tags.isEmpty
                ? nil : input.tags.sorted { $0.key < $1.key }.map { DynamoWire.Tag(Key: $0.key, Value: $0.value) })
        if case .provisioned(let read, let write) = input.billing {
            request.BillingMode = "PROVISIONED"
            request.ProvisionedThroughput = DynamoWire.Throughput(ReadCapacityUnits: read, WriteCapacityUnits: write)
        }
        return try await call("CreateTable", table: input.tableName, request, DynamoWire.TableDescriptionOutput.self)
            .TableDescription.model
    }

    @discardableResult
    public func deleteTable(_ tableName: String) async throws -> DynamoTableDescription {
        try await call(
            "DeleteTable", table: tableName, DynamoWire.TableName(TableName: tableName),
            DynamoWire.TableDescriptionOutput.self
        )
        .TableDescription.model
    }

    public func describeTable(_ tableName: String) async throws -> DynamoTableDescription {
        try await call(
            "DescribeTable", table: tableName, DynamoWire.TableName(TableName: tableName), DynamoWire.TableOutput.self
        )
        .Table.model
    }

    /// Until the table is `ACTIVE` (AWS takes seconds after CreateTable). A table not visible yet
    /// counts as pending; `DELETING` ends the wait.
    @discardableResult
    public func waitUntilTableActive(
        _ tableName: String, timeout: Duration = .seconds(300), interval: Duration = .seconds(5)
    ) async throws -> DynamoTableDescription {
        try await waitUntil(
            "table \(tableName) active in \(region)", timeout: timeout, interval: interval,
            dependencies: aws.dependencies
        ) { () -> WaiterStep<DynamoTableDescription> in
            let table: DynamoTableDescription
            do {
                table = try await describeTable(tableName)
            } catch let error as AWSError where error.code == "ResourceNotFoundException" {
                return .pending(state: "not visible yet")
            }
            switch table.status {
            case "ACTIVE": return .done(table)
            case "DELETING": return .failed(state: table.status)
            default: return .pending(state: table.status)
            }
        }
    }

    /// UpdateTimeToLive: items whose `attributeName` holds an epoch-seconds number in the past are
    /// deleted by DynamoDB (within days, not at once). Store it with `.date(_, as: .epochSeconds)`.
    public func updateTimeToLive(tableName: String, attributeName: String, enabled: Bool = true) async throws {
        let request = DynamoWire.UpdateTimeToLive(
            TableName: tableName,
            TimeToLiveSpecification: DynamoWire.TimeToLiveSpecification(AttributeName: attributeName, Enabled: enabled))
        _ = try await call("UpdateTimeToLive", table: tableName, request, DynamoWire.Empty.self)
    }

    public func describeTimeToLive(tableName: String) async throws -> DynamoTimeToLive {
        let output = try await call(
            "DescribeTimeToLive", table: tableName, DynamoWire.TableName(TableName: tableName),
            DynamoWire.TimeToLiveOutput.self)
        return DynamoTimeToLive(
            status: output.TimeToLiveDescription?.TimeToLiveStatus ?? "DISABLED",
            attributeName: output.TimeToLiveDescription?.AttributeName)
    }

    // MARK: Plumbing

    /// One JSON call; a `ConditionalCheckFailedException` becomes ``DynamoDBError``.
    func call<Input: Encodable, Output: Decodable>(
        _ operation: String, table: String, _ input: Input, _ output: Output.Type, keepErrorDocument: Bool = false
    ) async throws -> Output {
        do {
            return try await aws.json(
                .dynamoDB, operation: operation, input: input, output: output, keepErrorDocument: keepErrorDocument)
        } catch let error as AWSError where error.code == "ConditionalCheckFailedException" {
            throw DynamoDBError.conditionalCheckFailed(
                table: table, operation: operation, existingItem: Self.existingItem(error.errorDocument),
                requestId: error.requestId)
        }
    }

    /// The `Item` of a ConditionalCheckFailedException document, when there is one.
    static func existingItem(_ document: [UInt8]?) -> DynamoItem? {
        guard let document else { return nil }
        struct Failure: Decodable { var Item: DynamoItem? }
        return (try? JSONDecoder().decode(Failure.self, from: Data(document)))?.Item.flatMap { $0.isEmpty ? nil : $0 }
    }
}

extension Dictionary {
    /// nil for an empty dictionary: DynamoDB refuses empty `ExpressionAttribute*` maps.
    var nonEmpty: Self? { isEmpty ? nil : self }
}

/// DynamoDB's JSON shapes, member names as AWS spells them. Nil members are left out.
enum DynamoWire {
    struct PutItem: Encodable {
        var TableName: String
        var Item: DynamoItem
        var ConditionExpression: String?
        var ExpressionAttributeNames: [String: String]?
        var ExpressionAttributeValues: DynamoItem?
        var ReturnValues: String?
        var ReturnValuesOnConditionCheckFailure: String?
    }

    struct UpdateItem: Encodable {
        var TableName: String
        var Key: DynamoItem
        var UpdateExpression: String
        var ConditionExpression: String?
        var ExpressionAttributeNames: [String: String]?
        var ExpressionAttributeValues: DynamoItem?
        var ReturnValues: String?
        var ReturnValuesOnConditionCheckFailure: String?
    }

    struct DeleteItem: Encodable {
        var TableName: String
        var Key: DynamoItem
        var ConditionExpression: String?
        var ExpressionAttributeNames: [String: String]?
        var ExpressionAttributeValues: DynamoItem?
    }

    struct GetItem: Encodable {
        var TableName: String
        var Key: DynamoItem
        var ConsistentRead: Bool?
        var ProjectionExpression: String?
        var ExpressionAttributeNames: [String: String]?
    }

    struct Query: Encodable {
        var TableName: String
        var IndexName: String?
        var KeyConditionExpression: String
        var FilterExpression: String?
        var ProjectionExpression: String?
        var ExpressionAttributeNames: [String: String]?
        var ExpressionAttributeValues: DynamoItem?
        var ScanIndexForward: Bool?
        var Limit: Int?
        var ExclusiveStartKey: DynamoItem?
        var ConsistentRead: Bool?
    }

    struct Scan: Encodable {
        var TableName: String
        var Limit: Int?
        var ExclusiveStartKey: DynamoItem?
        var ConsistentRead: Bool?
    }

    struct Attributes: Decodable { var Attributes: DynamoItem? }
    struct GetItemOutput: Decodable { var Item: DynamoItem? }

    struct QueryOutput: Decodable {
        var Items: [DynamoItem]?
        var LastEvaluatedKey: DynamoItem?
        var Count: Int?
        var ScannedCount: Int?
    }

    struct AttributeDefinition: Encodable {
        var AttributeName: String
        var AttributeType: DynamoKeyType
    }

    struct KeySchemaElement: Codable {
        var AttributeName: String
        var KeyType: String
    }

    struct Throughput: Encodable {
        var ReadCapacityUnits: Int
        var WriteCapacityUnits: Int
    }

    struct Tag: Encodable {
        var Key: String
        var Value: String
    }

    struct CreateTable: Encodable {
        var TableName: String
        var AttributeDefinitions: [AttributeDefinition]
        var KeySchema: [KeySchemaElement]
        var BillingMode: String
        var ProvisionedThroughput: Throughput?
        var Tags: [Tag]?
    }

    struct TableName: Encodable { var TableName: String }

    struct Table: Decodable {
        var TableName: String
        var TableArn: String?
        var TableStatus: String?
        var KeySchema: [KeySchemaElement]?
        var ItemCount: Int?
        var CreationDateTime: JSONTimestamp?

        var model: DynamoTableDescription {
            DynamoTableDescription(
                tableName: TableName, tableArn: TableArn, status: TableStatus ?? "",
                partitionKey: KeySchema?.first { $0.KeyType == "HASH" }?.AttributeName,
                sortKey: KeySchema?.first { $0.KeyType == "RANGE" }?.AttributeName, itemCount: ItemCount,
                creationDate: CreationDateTime?.date)
        }
    }

    struct TableDescriptionOutput: Decodable { var TableDescription: Table }
    struct TableOutput: Decodable { var Table: Table }

    struct TimeToLiveSpecification: Encodable {
        var AttributeName: String
        var Enabled: Bool
    }

    struct UpdateTimeToLive: Encodable {
        var TableName: String
        var TimeToLiveSpecification: TimeToLiveSpecification
    }

    struct TimeToLiveOutput: Decodable {
        struct Description: Decodable {
            var TimeToLiveStatus: String?
            var AttributeName: String?
        }
        var TimeToLiveDescription: Description?
    }

    struct Empty: Decodable {}
}
