import Foundation
import RecoveryCore
import Testing

@Suite("Repair requests on the wire")
struct RepairRequestCodingTests {
    static let decoder = Timestamp.jsonDecoder()
    static let encoder = Timestamp.jsonEncoder()

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try decoder.decode(type, from: Data(text.utf8))
    }

    static func object(_ value: some Encodable) throws -> [String: Any] {
        let data = try encoder.encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// A ladder request as the decision worker wrote it before repairs existed.
    static let oldRequest = """
        {"idempotency_key": "shop/inc-1/restart", "target": "shop", "incident_id": "inc-1", "step": "restart",
         "instance_id": "i-1", "region": "us-east-1", "destination_region": "us-east-1",
         "elastic_ip_allocation_id": null, "requested_at": "2026-11-22T03:00:00Z", "deadline": "2026-11-22T03:10:00Z"}
        """

    @Test func aRequestWithoutRepairStillDecodesAndEncodesWithoutIt() throws {
        let request = try Self.decode(ActionRequest.self, Self.oldRequest)
        #expect(request.repair == nil)
        #expect(request.step == .restart)
        #expect(try Self.object(request)["repair"] == nil, "a ladder request does not grow a repair field")
        let outcome = try Self.decode(
            ActionOutcome.self,
            """
            {"idempotency_key": "shop/inc-1/restart", "incident_id": "inc-1", "step": "restart", "status": "succeeded"}
            """)
        #expect(outcome.repair == nil && outcome.resources == nil)
    }

    @Test func eachKindRoundTripsInSnakeCase() throws {
        let repairs: [RepairRequest] = [
            RepairRequest(
                .ssm(document: "disk-cleanup", parameters: ["maxAgeDays": ["7"]]), id: "pred-42",
                reason: "disk 93% full"),
            RepairRequest(.ebsRepair, id: "pred-43"),
            RepairRequest(.quarantine(detachElasticIP: true), id: "cmd-7", reason: "suspicious traffic"),
            RepairRequest(.unquarantine, id: "cmd-8"),
        ]
        for repair in repairs {
            let request = ActionRequest.repair(
                repair, target: "shop", instanceId: "i-1", region: "eu-west-1",
                requestedAt: Date(timeIntervalSince1970: 1_800_000_000),
                deadline: Date(timeIntervalSince1970: 1_800_000_900))
            #expect(request.idempotencyKey == "shop/repair/\(repair.kind.rawValue)/\(repair.id)")
            #expect(request.step == .notifyOnly, "a repair is not a ladder step")
            #expect(request.incidentId == repair.id)
            #expect(request.destinationRegion == "eu-west-1")
            let data = try Self.encoder.encode(request)
            #expect(try Self.decoder.decode(ActionRequest.self, from: data) == request)
            let wire = try #require(try Self.object(request)["repair"] as? [String: Any])
            #expect(wire["kind"] as? String == repair.kind.rawValue)
            #expect(wire["id"] as? String == repair.id)
        }
        let quarantine = try #require(
            try Self.object(
                ActionRequest.repair(
                    repairs[2], target: "shop", instanceId: "i-1", region: "r", requestedAt: Date(), deadline: Date()))[
                    "repair"] as? [String: Any])
        #expect(quarantine["detach_eip"] as? Bool == true)
        #expect(quarantine["reason"] as? String == "suspicious traffic")
    }

    @Test func theDocumentedShapesDecode() throws {
        let ssm = try Self.decode(
            RepairRequest.self,
            """
            {"kind": "ssm", "id": "p1", "document": "restart-services", "parameters": {"services": ["nginx", "php-fpm"]}}
            """)
        #expect(ssm.action == .ssm(document: "restart-services", parameters: ["services": ["nginx", "php-fpm"]]))
        let bare = try Self.decode(RepairRequest.self, #"{"kind": "quarantine", "id": "c1"}"#)
        #expect(bare.action == .quarantine(detachElasticIP: false), "detach_eip defaults to false")
        let ebs = try Self.decode(RepairRequest.self, #"{"kind": "ebs_repair", "id": "p2", "unknown_later_field": 1}"#)
        #expect(ebs.action == .ebsRepair)
    }

    @Test func malformedRepairsAreRefused() {
        for text in [
            #"{"kind": "ssm", "id": "p1"}"#,  // no document
            #"{"kind": "ssm", "id": "p1", "document": ""}"#,
            #"{"kind": "reboot_the_world", "id": "p1"}"#,  // unknown kind
            #"{"kind": "ebs_repair", "id": ""}"#,  // empty id
            #"{"kind": "ebs_repair"}"#,  // no id
        ] {
            #expect(throws: DecodingError.self, "\(text)") { try Self.decode(RepairRequest.self, text) }
        }
    }

    @Test func aRepairOutcomeCarriesItsKindAndResources() throws {
        let request = ActionRequest.repair(
            RepairRequest(.ebsRepair, id: "p9"), target: "shop", instanceId: "i-1", region: "us-east-1",
            requestedAt: Date(), deadline: Date())
        let outcome = ActionOutcome(
            for: request, status: .succeeded, resources: ["new_volume_id": "vol-2", "old_volume_id": "vol-1"])
        let wire = try Self.object(outcome)
        #expect(wire["repair"] as? String == "ebs_repair")
        #expect((wire["resources"] as? [String: String])?["new_volume_id"] == "vol-2")
        #expect(try Self.decoder.decode(ActionOutcome.self, from: try Self.encoder.encode(outcome)) == outcome)
    }
}
