import Foundation

/// A DynamoDB call was refused for a reason callers act on. Other failures are ``AWSError``s.
public enum DynamoDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `ConditionExpression` was false (`ConditionalCheckFailedException`). For a write guarded by
    /// `attribute_not_exists(...)` this means "already written", which an idempotent writer treats as
    /// success. `existingItem` is the item as it stands, when the call asked for it
    /// (`returnItemOnConditionFailure`) and the item exists.
    case conditionalCheckFailed(table: String, operation: String, existingItem: DynamoItem?, requestId: String?)

    public var description: String {
        switch self {
        case .conditionalCheckFailed(let table, let operation, let item, let requestId):
            "DynamoDB \(operation) on table \(table): the condition was false, nothing was written"
                + (item == nil ? "" : " (the existing item was returned)")
                + (requestId.map { " [request id \($0)]" } ?? "")
                + ". If the condition guards against a repeat, the earlier write already happened."
        }
    }
}

/// The attribute type of a key attribute.
public enum DynamoKeyType: String, Sendable, Codable, Hashable {
    case string = "S"
    case number = "N"
    case binary = "B"
}

/// A key attribute of a table or index.
public struct DynamoKeyAttribute: Sendable, Hashable {
    public var name: String
    public var type: DynamoKeyType
    public init(_ name: String, _ type: DynamoKeyType) {
        self.name = name
        self.type = type
    }
}

/// `PutItem`.
public struct PutItemInput: Sendable {
    public var tableName: String
    public var item: DynamoItem
    /// e.g. `attribute_not_exists(#pk)`. A false condition throws ``DynamoDBError/conditionalCheckFailed(table:operation:existingItem:requestId:)``.
    public var conditionExpression: String?
    /// `#name` placeholders in expressions.
    public var expressionAttributeNames: [String: String]
    /// `:value` placeholders in expressions.
    public var expressionAttributeValues: DynamoItem
    /// Return the item this put replaced (`ReturnValues=ALL_OLD`).
    public var returnOldItem: Bool
    /// On a false condition, return the existing item in the error (`ReturnValuesOnConditionCheckFailure=ALL_OLD`).
    public var returnItemOnConditionFailure: Bool

    public init(
        tableName: String, item: DynamoItem, conditionExpression: String? = nil,
        expressionAttributeNames: [String: String] = [:], expressionAttributeValues: DynamoItem = [:],
        returnOldItem: Bool = false, returnItemOnConditionFailure: Bool = false
    ) {
        self.tableName = tableName
        self.item = item
        self.conditionExpression = conditionExpression
        self.expressionAttributeNames = expressionAttributeNames
        self.expressionAttributeValues = expressionAttributeValues
        self.returnOldItem = returnOldItem
        self.returnItemOnConditionFailure = returnItemOnConditionFailure
    }

    /// A put that only writes when no item with this key exists yet:
    /// `attribute_not_exists(#pk)` on the partition key attribute.
    public static func ifAbsent(
        tableName: String, item: DynamoItem, partitionKey: String, returnExistingItem: Bool = false
    ) -> PutItemInput {
        PutItemInput(
            tableName: tableName, item: item, conditionExpression: "attribute_not_exists(#pk)",
            expressionAttributeNames: ["#pk": partitionKey], returnItemOnConditionFailure: returnExistingItem)
    }
}

/// What `putItemIfAbsent` did.
public enum PutIfAbsentResult: Sendable, Equatable {
    case written
    /// An item with this key was there already (its current state, when asked for).
    case alreadyExists(DynamoItem?)
}

/// `UpdateItem`'s `ReturnValues`.
public enum DynamoReturnValues: String, Sendable, Codable {
    case none = "NONE"
    case allOld = "ALL_OLD"
    case updatedOld = "UPDATED_OLD"
    case allNew = "ALL_NEW"
    case updatedNew = "UPDATED_NEW"
}

/// `UpdateItem`.
public struct UpdateItemInput: Sendable {
    public var tableName: String
    public var key: DynamoItem
    /// e.g. `SET #s = :s ADD #n :one`.
    public var updateExpression: String
    public var conditionExpression: String?
    public var expressionAttributeNames: [String: String]
    public var expressionAttributeValues: DynamoItem
    public var returnValues: DynamoReturnValues
    public var returnItemOnConditionFailure: Bool

    public init(
        tableName: String, key: DynamoItem, updateExpression: String, conditionExpression: String? = nil,
        expressionAttributeNames: [String: String] = [:], expressionAttributeValues: DynamoItem = [:],
        returnValues: DynamoReturnValues = .none, returnItemOnConditionFailure: Bool = false
    ) {
        self.tableName = tableName
        self.key = key
        self.updateExpression = updateExpression
        self.conditionExpression = conditionExpression
        self.expressionAttributeNames = expressionAttributeNames
        self.expressionAttributeValues = expressionAttributeValues
        self.returnValues = returnValues
        self.returnItemOnConditionFailure = returnItemOnConditionFailure
    }
}

/// `DeleteItem`.
public struct DeleteItemInput: Sendable {
    public var tableName: String
    public var key: DynamoItem
    public var conditionExpression: String?
    public var expressionAttributeNames: [String: String]
    public var expressionAttributeValues: DynamoItem

    public init(
        tableName: String, key: DynamoItem, conditionExpression: String? = nil,
        expressionAttributeNames: [String: String] = [:], expressionAttributeValues: DynamoItem = [:]
    ) {
        self.tableName = tableName
        self.key = key
        self.conditionExpression = conditionExpression
        self.expressionAttributeNames = expressionAttributeNames
        self.expressionAttributeValues = expressionAttributeValues
    }
}

/// The condition on the sort key of a ``DynamoKeyCondition``.
public enum DynamoSortKeyCondition: Sendable, Hashable {
    case equals(DynamoValue)
    case lessThan(DynamoValue)
    case lessThanOrEqual(DynamoValue)
    case greaterThan(DynamoValue)
    case greaterThanOrEqual(DynamoValue)
    case between(DynamoValue, DynamoValue)
    /// `begins_with(sk, :prefix)`, for string (or binary) sort keys.
    case beginsWith(String)
}

/// A `KeyConditionExpression` built from typed parts: the partition key's value and, optionally, a
/// condition on the sort key. Placeholders are `#k0`/`:k0`…, so they cannot clash with a filter's.
public struct DynamoKeyCondition: Sendable, Hashable {
    public var partitionKey: String
    public var partitionValue: DynamoValue
    public var sortKey: String?
    public var sortCondition: DynamoSortKeyCondition?

    public init(
        partitionKey: String, equals value: DynamoValue, sortKey: String? = nil,
        _ sortCondition: DynamoSortKeyCondition? = nil
    ) {
        self.partitionKey = partitionKey
        self.partitionValue = value
        self.sortKey = sortKey
        self.sortCondition = sortCondition
    }

    /// The expression, and the names and values it uses.
    public var rendered: (expression: String, names: [String: String], values: DynamoItem) {
        var names = ["#k0": partitionKey]
        var values: DynamoItem = [":k0": partitionValue]
        var expression = "#k0 = :k0"
        if let sortKey, let sortCondition {
            names["#k1"] = sortKey
            switch sortCondition {
            case .equals(let v):
                expression += " AND #k1 = :k1"
                values[":k1"] = v
            case .lessThan(let v):
                expression += " AND #k1 < :k1"
                values[":k1"] = v
            case .lessThanOrEqual(let v):
                expression += " AND #k1 <= :k1"
                values[":k1"] = v
            case .greaterThan(let v):
                expression += " AND #k1 > :k1"
                values[":k1"] = v
            case .greaterThanOrEqual(let v):
                expression += " AND #k1 >= :k1"
                values[":k1"] = v
            case .between(let low, let high):
                expression += " AND #k1 BETWEEN :k1 AND :k2"
                values[":k1"] = low
                values[":k2"] = high
            case .beginsWith(let prefix):
                expression += " AND begins_with(#k1, :k1)"
                values[":k1"] = .string(prefix)
            }
        }
        return (expression, names, values)
    }
}

/// `Query`: one page with ``DynamoDBClient/query(_:)``, every page with ``DynamoDBClient/queryAll(_:)``.
public struct QueryInput: Sendable {
    public var tableName: String
    public var indexName: String?
    public var keyConditionExpression: String
    public var filterExpression: String?
    public var projectionExpression: String?
    public var expressionAttributeNames: [String: String]
    public var expressionAttributeValues: DynamoItem
    /// Ascending sort-key order when true (the default), descending when false.
    public var scanIndexForward: Bool
    /// Items evaluated per page (before the filter).
    public var limit: Int?
    /// Where the page starts: the previous page's `lastEvaluatedKey`.
    public var exclusiveStartKey: DynamoItem?
    public var consistentRead: Bool

    public init(
        tableName: String, keyConditionExpression: String, indexName: String? = nil, filterExpression: String? = nil,
        projectionExpression: String? = nil, expressionAttributeNames: [String: String] = [:],
        expressionAttributeValues: DynamoItem = [:], scanIndexForward: Bool = true, limit: Int? = nil,
        exclusiveStartKey: DynamoItem? = nil, consistentRead: Bool = false
    ) {
        self.tableName = tableName
        self.indexName = indexName
        self.keyConditionExpression = keyConditionExpression
        self.filterExpression = filterExpression
        self.projectionExpression = projectionExpression
        self.expressionAttributeNames = expressionAttributeNames
        self.expressionAttributeValues = expressionAttributeValues
        self.scanIndexForward = scanIndexForward
        self.limit = limit
        self.exclusiveStartKey = exclusiveStartKey
        self.consistentRead = consistentRead
    }

    /// A query from a typed key condition; filter names and values are merged in.
    public init(
        tableName: String, key: DynamoKeyCondition, indexName: String? = nil, filterExpression: String? = nil,
        expressionAttributeNames: [String: String] = [:], expressionAttributeValues: DynamoItem = [:],
        scanIndexForward: Bool = true, limit: Int? = nil, consistentRead: Bool = false
    ) {
        let rendered = key.rendered
        self.init(
            tableName: tableName, keyConditionExpression: rendered.expression, indexName: indexName,
            filterExpression: filterExpression,
            expressionAttributeNames: expressionAttributeNames.merging(rendered.names) { $1 },
            expressionAttributeValues: expressionAttributeValues.merging(rendered.values) { $1 },
            scanIndexForward: scanIndexForward, limit: limit, consistentRead: consistentRead)
    }
}

/// One page of a `Query`.
public struct QueryPage: Sendable, Equatable {
    public var items: [DynamoItem]
    /// Where the next page starts; nil on the last page.
    public var lastEvaluatedKey: DynamoItem?
    public var count: Int
    public var scannedCount: Int
}

/// `CreateTable`.
public struct CreateTableInput: Sendable {
    public enum Billing: Sendable, Equatable {
        case payPerRequest
        case provisioned(readCapacityUnits: Int, writeCapacityUnits: Int)
    }

    public var tableName: String
    public var partitionKey: DynamoKeyAttribute
    public var sortKey: DynamoKeyAttribute?
    public var billing: Billing
    public var tags: [String: String]

    public init(
        tableName: String, partitionKey: DynamoKeyAttribute, sortKey: DynamoKeyAttribute? = nil,
        billing: Billing = .payPerRequest, tags: [String: String] = [:]
    ) {
        self.tableName = tableName
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.billing = billing
        self.tags = tags
    }
}

/// A table as `DescribeTable` (or Create/Delete) reports it.
public struct DynamoTableDescription: Sendable, Equatable {
    public var tableName: String
    public var tableArn: String?
    /// `CREATING`, `ACTIVE`, `UPDATING`, `DELETING`, …
    public var status: String
    public var partitionKey: String?
    public var sortKey: String?
    public var itemCount: Int?
    public var creationDate: Date?
}

/// `DescribeTimeToLive`.
public struct DynamoTimeToLive: Sendable, Equatable {
    /// `ENABLING`, `ENABLED`, `DISABLING` or `DISABLED`.
    public var status: String
    public var attributeName: String?
}
