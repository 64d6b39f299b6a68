import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

/// DynamoNumber and DynamoValue (the wire form, exactness), and the DynamoDB client's requests and error
/// mapping against a scripted fake transport. No server.
@Suite("DynamoDB values and encoding")
struct DynamoDBEncodingTests {
    // MARK: DynamoNumber

    @Test(
        "valid numbers keep their text",
        arguments: [
            "0", "-0", "0.1", "-0.1", "42", "0000012", "12345678901234567890123456789.123456789", "1E-130", "-1E-130",
            "9.9999999999999999999999999999999999999E+125", "-9.9999999999999999999999999999999999999E+125",
            "0.00000000000000000000000000000000000000000001", "1.000000000000000000000000000000000000000000000",
            "1e5", "1E+5", "2.5e-3", "99999999999999999999999999999999999999",
        ])
    func validNumbers(_ text: String) throws {
        let number = try DynamoNumber(text)
        #expect(number.text == text)
        #expect(number.description == text)
    }

    @Test(
        "invalid numbers are refused",
        arguments: [
            "", "-", "+1", "1.", ".5", "1e", "1e+", "abc", "1,5", " 1", "1 ", "NaN", "Infinity", "0x10", "1_000", "--1",
            "1E-131", "0.9E-130", "1E+126", "10E+125", "1e999999999",
            // 39 significant digits: one more than DynamoDB keeps.
            "123456789012345678901234567890.123456789", "999999999999999999999999999999999999999",
        ])
    func invalidNumbers(_ text: String) {
        #expect(throws: DynamoNumber.FormatError.self) { try DynamoNumber(text) }
    }

    @Test("equality, hashing and order are numeric; the text is kept")
    func numericEquality() throws {
        let a = try DynamoNumber("1.50")
        let b = try DynamoNumber("1.5")
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a.text == "1.50")
        #expect(try DynamoNumber("100") == DynamoNumber("1E2"))
        #expect(try DynamoNumber("-0") == DynamoNumber("0.000"))
        #expect(try DynamoNumber("0.1") != DynamoNumber("0.10000000000000001"))
        let texts = [
            "10", "-2.5", "0", "1E-130", "-1E-130", "9.99E+125", "0.3", "-100", "2", "1.999999999999999999999999",
        ]
        let sorted = try texts.map(DynamoNumber.init).sorted().map(\.text)
        #expect(
            sorted == [
                "-100", "-2.5", "-1E-130", "0", "1E-130", "0.3", "1.999999999999999999999999", "2", "10", "9.99E+125",
            ])
        #expect(try DynamoNumber("1.50").normalized == "1.5")
        #expect(try DynamoNumber("1E-130").normalized == "1E-130")
        #expect(try DynamoNumber("-000120.0").normalized == "-120")
        #expect(try DynamoNumber("0.00012").normalized == "0.00012")
    }

    @Test("Int64 and Decimal conversions are exact or nil, never rounded")
    func conversions() throws {
        #expect(try DynamoNumber("9223372036854775807").int64Value == Int64.max)
        #expect(try DynamoNumber("-9223372036854775808").int64Value == Int64.min)
        #expect(try DynamoNumber("9223372036854775808").int64Value == nil)
        #expect(try DynamoNumber("1.5").int64Value == nil)
        #expect(try DynamoNumber("1E3").int64Value == 1000)
        #expect(try DynamoNumber("12.000").int64Value == 12)
        #expect(DynamoNumber(Int64.min).text == "-9223372036854775808")
        #expect(DynamoNumber(UInt64.max).text == "18446744073709551615")
        #expect(DynamoNumber(UInt64.max).int64Value == nil)
        let tenth = try #require(try DynamoNumber("0.1").decimalValue)
        #expect(tenth == Decimal(string: "0.1"))
        #expect(
            try DynamoNumber("12345678901234567890123456789.123456789").decimalValue
                == Decimal(string: "12345678901234567890123456789.123456789"))
        #expect(try DynamoNumber("1E-130").decimalValue == nil)  // below Decimal's exponent range
        #expect(try DynamoNumber(Decimal(string: "0.1")!).text == "0.1")
        #expect(try DynamoNumber(Decimal(string: "-123.456")!).text == "-123.456")
        #expect(throws: DynamoNumber.FormatError.self) { try DynamoNumber(Decimal.nan) }
    }

    // MARK: DynamoValue wire form

    func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test("each type's wire form")
    func wireForms() throws {
        #expect(try json(DynamoValue.string("a")) == #"{"S":"a"}"#)
        #expect(try json(DynamoValue.number("0.1")) == #"{"N":"0.1"}"#)
        #expect(try json(DynamoValue.binary(Data([0, 1, 2, 255]))) == #"{"B":"AAEC/w=="}"#)
        #expect(try json(DynamoValue.bool(false)) == #"{"BOOL":false}"#)
        #expect(try json(DynamoValue.null) == #"{"NULL":true}"#)
        #expect(try json(DynamoValue.list(["x", 1])) == #"{"L":[{"S":"x"},{"N":"1"}]}"#)
        #expect(try json(DynamoValue.map(["k": true])) == #"{"M":{"k":{"BOOL":true}}}"#)
        #expect(try json(DynamoValue.stringSet(["b", "a"])) == #"{"SS":["b","a"]}"#)
        #expect(
            try json(DynamoValue.numberSet([DynamoNumber("1E-130"), DynamoNumber("-7")])) == #"{"NS":["1E-130","-7"]}"#)
        #expect(try json(DynamoValue.binarySet([Data([1]), Data([2])])) == #"{"BS":["AQ==","Ag=="]}"#)
    }

    @Test("numbers a Double would mangle go out and come back digit for digit")
    func numbersExact() throws {
        let texts = [
            "0.1", "0.30000000000000004", "12345678901234567890123456789.123456789", "-1E-130", "1.50",
            "9007199254740993", "99999999999999999999999999999999999999",
        ]
        let item: DynamoItem = [
            "n": .list(try texts.map { try .number($0) }),
            "ns": .numberSet(try texts.dropLast(2).map(DynamoNumber.init)),
        ]
        let text = try json(item)
        for number in texts { #expect(text.contains("\"\(number)\"")) }
        let decoded = try JSONDecoder().decode(DynamoItem.self, from: Data(text.utf8))
        #expect(decoded["n"]?.listValue?.compactMap { $0.numberValue?.text } == texts)
        #expect(decoded == item)
        // What a Double would have done:
        #expect(String(Double("12345678901234567890123456789.123456789")!) != "12345678901234567890123456789.123456789")
    }

    @Test("every type survives encode and decode")
    func roundTrip() throws {
        let value: DynamoValue = [
            "s": "héllo \"quoted\" / ✓", "n": 42, "neg": .number(Int64.min), "b": .binary(Data("bytes".utf8)),
            "t": true, "z": .null, "l": [1, "two", [false]], "m": ["inner": ["deep": 3]],
            "ss": .stringSet(["a", "b"]), "ns": .numberSet([1, 2]), "bs": .binarySet([Data([9])]), "empty": .list([]),
            "emptyMap": .map([:]),
        ]
        let decoded = try JSONDecoder().decode(DynamoValue.self, from: Data(try json(value).utf8))
        #expect(decoded == value)
    }

    @Test("empty sets and sets with duplicates are refused before sending")
    func badSets() {
        for value in [
            DynamoValue.stringSet([]), .numberSet([]), .binarySet([]), .stringSet(["a", "a"]),
            .numberSet([1, try! DynamoNumber("1.0")]),
        ] {
            #expect(throws: EncodingError.self) { try json(value) }
        }
    }

    @Test(
        "malformed attribute values are refused",
        arguments: [
            #"{}"#, #"{"S":"a","N":"1"}"#, #"{"X":"1"}"#, #"{"NULL":false}"#, #"{"N":"abc"}"#, #"{"N":1}"#,
            #"{"B":"!!not base64"}"#, #"{"NS":["1","x"]}"#, #"{"BOOL":"true"}"#,
        ])
    func malformed(_ text: String) {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(DynamoValue.self, from: Data(text.utf8)) }
    }

    @Test("dates as sortable ISO strings with milliseconds, or epoch seconds for TTL")
    func dates() throws {
        let date = Date(timeIntervalSince1970: 1_767_323_045.678)  // 2026-01-02T03:04:05.678Z
        #expect(DynamoValue.date(date, as: .iso8601) == .string("2026-01-02T03:04:05.678Z"))
        #expect(DynamoValue.date(date, as: .epochSeconds) == .number(1_767_323_045))
        #expect(DynamoValue.date(Date(timeIntervalSince1970: 0), as: .iso8601) == .string("1970-01-01T00:00:00.000Z"))
        #expect(
            DynamoValue.date(Date(timeIntervalSince1970: -0.5), as: .iso8601) == .string("1969-12-31T23:59:59.500Z"))
        let back = try #require(DynamoValue.date(date, as: .iso8601).dateValue(.iso8601))
        #expect(abs(back.timeIntervalSince(date)) < 0.001)
        #expect(
            DynamoValue.number(1_767_323_045).dateValue(.epochSeconds) == Date(timeIntervalSince1970: 1_767_323_045))
        #expect(DynamoValue.string("x").dateValue(.iso8601) == nil)
        // Fixed width: string order is time order.
        let times = [0.001, 0.01, 0.1, 1, 10, 100_000].map {
            DynamoValue.date(Date(timeIntervalSince1970: 1_700_000_000 + $0), as: .iso8601).stringValue!
        }
        #expect(times == times.sorted())
    }

    @Test("accessors read only their own type")
    func accessors() {
        let value: DynamoValue = 7
        #expect(value.intValue == 7)
        #expect(value.int64Value == 7)
        #expect(value.stringValue == nil)
        #expect(DynamoValue.string("7").intValue == nil)
        #expect(DynamoValue.null.isNull)
        #expect(DynamoValue.bool(true).boolValue == true)
        #expect(DynamoValue.map(["a": 1]).mapValue?["a"] == 1)
    }

    @Test("a typed key condition renders begins_with and BETWEEN with its own placeholders")
    func keyCondition() throws {
        let prefix = DynamoKeyCondition(
            partitionKey: "instance_id", equals: "i-1", sortKey: "timestamp", .beginsWith("2026-01"))
        #expect(prefix.rendered.expression == "#k0 = :k0 AND begins_with(#k1, :k1)")
        #expect(prefix.rendered.names == ["#k0": "instance_id", "#k1": "timestamp"])
        #expect(prefix.rendered.values == [":k0": "i-1", ":k1": "2026-01"])
        let between = DynamoKeyCondition(partitionKey: "p", equals: 1, sortKey: "s", .between(2, 3)).rendered
        #expect(between.expression == "#k0 = :k0 AND #k1 BETWEEN :k1 AND :k2")
        #expect(DynamoKeyCondition(partitionKey: "p", equals: 1).rendered.expression == "#k0 = :k0")
        let query = QueryInput(
            tableName: "t", key: prefix, filterExpression: "#st = :st", expressionAttributeNames: ["#st": "status"],
            expressionAttributeValues: [":st": "ok"])
        #expect(query.expressionAttributeNames.count == 3 && query.expressionAttributeValues.count == 3)
    }

    // MARK: Requests and errors

    static let conditionFailed =
        #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#

    @Test("PutItem: target, content type, exact numbers, condition; empty maps left out")
    func putItemRequest() async throws {
        let transport = ScriptedTransport { _, _ in .init(200, "{}") }
        let dynamo = DynamoDBClient(fakeAWS(transport))
        try await dynamo.putItem(
            .ifAbsent(
                tableName: "checks", item: ["instance_id": "i-1", "latency": try .number("0.1")],
                partitionKey: "instance_id"))
        try await dynamo.putItem(PutItemInput(tableName: "checks", item: ["instance_id": "i-2"]))
        let request = try #require(transport.requests.first)
        #expect(request.headers.contains { $0.name == "X-Amz-Target" && $0.value == "DynamoDB_20120810.PutItem" })
        #expect(request.headers.contains { $0.name == "Content-Type" && $0.value == "application/x-amz-json-1.0" })
        let body = transport.bodies[0]
        #expect(body.contains(#""latency":{"N":"0.1"}"#))
        #expect(body.contains(#""ConditionExpression":"attribute_not_exists(#pk)""#))
        #expect(body.contains(##""ExpressionAttributeNames":{"#pk":"instance_id"}"##))
        #expect(!body.contains("ExpressionAttributeValues"))
        #expect(!body.contains("ReturnValues"))
        let plain = transport.jsonBodies[1]
        #expect(Set(plain.keys) == ["TableName", "Item"])
    }

    @Test(
        "ConditionalCheckFailedException becomes conditionalCheckFailed, with the existing item when asked; not retried"
    )
    func conditionalCheckFailed() async throws {
        let withItem =
            #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","Message":"The conditional request failed","Item":{"instance_id":{"S":"i-1"},"n":{"N":"1.50"}}}"#
        let transport = ScriptedTransport { request, _ in
            let body = String(decoding: request.body, as: UTF8.self)
            return .init(
                400, body.contains("ReturnValuesOnConditionCheckFailure") ? withItem : Self.conditionFailed,
                headers: [("x-amzn-RequestId", "req-1")])
        }
        let dynamo = DynamoDBClient(fakeAWS(transport))
        do {
            try await dynamo.putItem(
                .ifAbsent(tableName: "t", item: ["instance_id": "i-1"], partitionKey: "instance_id"))
            Issue.record("expected conditionalCheckFailed")
        } catch let error as DynamoDBError {
            #expect(
                error
                    == .conditionalCheckFailed(table: "t", operation: "PutItem", existingItem: nil, requestId: "req-1"))
            #expect(error.description.contains("already happened"))
        }
        #expect(transport.requests.count == 1)
        let result = try await dynamo.putItemIfAbsent(
            tableName: "t", item: ["instance_id": "i-1"], partitionKey: "instance_id", returnExistingItem: true)
        guard case .alreadyExists(let existing) = result else {
            Issue.record("expected alreadyExists, got \(result)")
            return
        }
        #expect(existing?["n"]?.numberValue?.text == "1.50")
        #expect(transport.jsonBodies[1]["ReturnValuesOnConditionCheckFailure"] as? String == "ALL_OLD")
        // UpdateItem maps the same way.
        await #expect(throws: DynamoDBError.self) {
            try await dynamo.updateItem(
                UpdateItemInput(
                    tableName: "t", key: ["instance_id": "i-1"], updateExpression: "SET a = :a",
                    conditionExpression: "a = :b",
                    expressionAttributeValues: [":a": 1, ":b": 2]))
        }
    }

    @Test("other DynamoDB errors stay AWSErrors with the short code")
    func otherErrors() async throws {
        let transport = ScriptedTransport { _, _ in
            .init(
                400,
                #"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"Requested resource not found"}"#
            )
        }
        do {
            _ = try await DynamoDBClient(fakeAWS(transport)).getItem(tableName: "missing", key: ["k": "v"])
            Issue.record("expected an error")
        } catch let error as AWSError {
            #expect(error.code == "ResourceNotFoundException")
            #expect(error.kind == .clientError)
            #expect(error.message == "Requested resource not found")
            #expect(error.errorDocument == nil)  // only kept when asked for
        }
    }

    @Test("the error document is not kept when it holds a credential")
    func errorDocumentWithSecret() async throws {
        let transport = ScriptedTransport { _, _ in
            .init(
                400,
                #"{"__type":"x#ConditionalCheckFailedException","Item":{"k":{"S":"\#(testCredentials.secretAccessKey)"}}}"#
            )
        }
        do {
            try await DynamoDBClient(fakeAWS(transport)).putItem(
                PutItemInput(
                    tableName: "t", item: ["k": "v"], conditionExpression: "x", returnItemOnConditionFailure: true))
            Issue.record("expected conditionalCheckFailed")
        } catch DynamoDBError.conditionalCheckFailed(_, _, let item, _) {
            #expect(item == nil)
        }
    }

    @Test("queryAll follows LastEvaluatedKey; a repeated key stops the loop")
    func queryPagination() async throws {
        let pages = [
            #"{"Items":[{"k":{"S":"a"}}],"Count":1,"ScannedCount":1,"LastEvaluatedKey":{"k":{"S":"a"}}}"#,
            #"{"Items":[{"k":{"S":"b"}}],"Count":1,"ScannedCount":1,"LastEvaluatedKey":{"k":{"S":"b"}}}"#,
            #"{"Items":[{"k":{"S":"c"}}],"Count":1,"ScannedCount":1}"#,
        ]
        let transport = ScriptedTransport { _, index in .init(200, pages[min(index, 2)]) }
        let dynamo = DynamoDBClient(fakeAWS(transport))
        let input = QueryInput(
            tableName: "t", key: DynamoKeyCondition(partitionKey: "p", equals: "x"), scanIndexForward: false, limit: 1)
        let items = try await dynamo.queryAll(input)
        #expect(items.map { $0["k"]?.stringValue } == ["a", "b", "c"])
        let bodies = transport.jsonBodies
        #expect(bodies.count == 3)
        #expect(bodies[0]["ExclusiveStartKey"] == nil)
        #expect((bodies[1]["ExclusiveStartKey"] as? [String: [String: String]])?["k"]?["S"] == "a")
        #expect((bodies[2]["ExclusiveStartKey"] as? [String: [String: String]])?["k"]?["S"] == "b")
        #expect(bodies[0]["ScanIndexForward"] as? Bool == false)
        #expect(bodies[0]["Limit"] as? Int == 1)

        let looping = ScriptedTransport { _, _ in .init(200, pages[0]) }
        do {
            _ = try await DynamoDBClient(fakeAWS(looping)).queryAll(input)
            Issue.record("expected a loop error")
        } catch let error as AWSError {
            #expect(error.kind == .invalidResponse)
            #expect(looping.requests.count == 2)
        }
    }
}
