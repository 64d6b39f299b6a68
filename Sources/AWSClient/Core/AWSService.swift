import Foundation

/// What the client needs to know about one AWS service: how to reach it, how to sign for it, and which
/// protocol and API version it speaks. Add a service by adding a constant here.
public struct AWSService: Sendable, Hashable, CustomStringConvertible {
    /// The SDK service id ("EC2", "CloudWatch", "Route 53"). Names the `AWS_ENDPOINT_URL_<ID>` variable:
    /// upper-cased, spaces to underscores.
    public var serviceId: String
    /// DNS label of the regional endpoint: `<prefix>.<region>.amazonaws.com`.
    public var endpointPrefix: String
    /// The service name in the SigV4 credential scope.
    public var signingName: String
    /// `Version` of Query requests; the URL prefix of REST-XML requests.
    public var apiVersion: String
    /// For global services (Route 53, IAM): the one host, and the region their signatures name.
    public var globalEndpoint: GlobalEndpoint?
    /// For JSON-protocol services: the `X-Amz-Target` prefix and the JSON version ("1.0" or "1.1").
    public var jsonTargetPrefix: String?
    public var jsonVersion: String?

    public struct GlobalEndpoint: Sendable, Hashable {
        public var host: String
        public var signingRegion: String
        public init(host: String, signingRegion: String) {
            self.host = host
            self.signingRegion = signingRegion
        }
    }

    public init(
        serviceId: String, endpointPrefix: String, signingName: String, apiVersion: String,
        globalEndpoint: GlobalEndpoint? = nil, jsonTargetPrefix: String? = nil, jsonVersion: String? = nil
    ) {
        self.serviceId = serviceId
        self.endpointPrefix = endpointPrefix
        self.signingName = signingName
        self.apiVersion = apiVersion
        self.globalEndpoint = globalEndpoint
        self.jsonTargetPrefix = jsonTargetPrefix
        self.jsonVersion = jsonVersion
    }

    public var description: String { serviceId }

    /// `AWS_ENDPOINT_URL_<ID>`.
    public var endpointVariable: String {
        "AWS_ENDPOINT_URL_" + serviceId.uppercased().replacingOccurrences(of: " ", with: "_")
    }

    public static let ec2 = AWSService(
        serviceId: "EC2", endpointPrefix: "ec2", signingName: "ec2", apiVersion: "2016-11-15")
    public static let cloudWatch = AWSService(
        serviceId: "CloudWatch", endpointPrefix: "monitoring", signingName: "monitoring", apiVersion: "2010-08-01")
    public static let ses = AWSService(
        serviceId: "SES", endpointPrefix: "email", signingName: "ses", apiVersion: "2010-12-01")
    public static let sns = AWSService(
        serviceId: "SNS", endpointPrefix: "sns", signingName: "sns", apiVersion: "2010-03-31")
    public static let ssm = AWSService(
        serviceId: "SSM", endpointPrefix: "ssm", signingName: "ssm", apiVersion: "2014-11-06",
        jsonTargetPrefix: "AmazonSSM", jsonVersion: "1.1")
    public static let dynamoDB = AWSService(
        serviceId: "DynamoDB", endpointPrefix: "dynamodb", signingName: "dynamodb", apiVersion: "2012-08-10",
        jsonTargetPrefix: "DynamoDB_20120810", jsonVersion: "1.0")
    public static let route53 = AWSService(
        serviceId: "Route 53", endpointPrefix: "route53", signingName: "route53", apiVersion: "2013-04-01",
        globalEndpoint: GlobalEndpoint(host: "route53.amazonaws.com", signingRegion: "us-east-1"))
    public static let iam = AWSService(
        serviceId: "IAM", endpointPrefix: "iam", signingName: "iam", apiVersion: "2010-05-08",
        globalEndpoint: GlobalEndpoint(host: "iam.amazonaws.com", signingRegion: "us-east-1"))
    public static let sts = AWSService(
        serviceId: "STS", endpointPrefix: "sts", signingName: "sts", apiVersion: "2011-06-15")
}

/// Where a request goes and which region its signature names.
public struct AWSEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// Scheme, host and optional port, without a trailing slash (may carry a base path).
    public var url: String
    public var signingRegion: String
    /// True when it came from `AWS_ENDPOINT_URL[_<ID>]`.
    public var isCustom: Bool

    public var description: String { "\(url) (signing region \(signingRegion))" }
}

/// Endpoint and region rules, as the AWS SDKs apply them.
public enum AWSEndpointResolver {
    /// 1. `AWS_ENDPOINT_URL_<SERVICE_ID>` (e.g. `AWS_ENDPOINT_URL_ROUTE_53`), then
    /// 2. `AWS_ENDPOINT_URL`, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`; a custom endpoint is
    ///    signed for the client's region (a global service keeps its global signing region);
    /// 3. otherwise the real endpoint: the global host of a global service (signed for its global
    ///    region), else `https://<prefix>.<region>.amazonaws.com` (`.amazonaws.com.cn` in China).
    public static func resolve(
        service: AWSService, region: String, environment: [String: String]
    ) -> AWSEndpoint {
        let signingRegion = service.globalEndpoint?.signingRegion ?? region
        if environment["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]?.lowercased() != "true" {
            for variable in [service.endpointVariable, "AWS_ENDPOINT_URL"] {
                if let value = environment[variable]?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
                    return AWSEndpoint(url: trimmed(value), signingRegion: signingRegion, isCustom: true)
                }
            }
        }
        let china = region.hasPrefix("cn-")
        if let global = service.globalEndpoint, !china {
            return AWSEndpoint(url: "https://\(global.host)", signingRegion: global.signingRegion, isCustom: false)
        }
        let suffix = china ? "amazonaws.com.cn" : "amazonaws.com"
        return AWSEndpoint(
            url: "https://\(service.endpointPrefix).\(region).\(suffix)", signingRegion: china ? region : signingRegion,
            isCustom: false)
    }

    private static func trimmed(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    /// The region from `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the selected profile's `region` in
    /// the shared config file. Nil when none is set.
    public static func region(environment: [String: String]) -> String? {
        for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let value = environment[variable]?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
                return value
            }
        }
        guard let files = try? SharedConfigFiles.load(environment: environment) else { return nil }
        let name = SharedConfigFiles.selectedProfile(environment: environment).name
        return files.configProfiles?[name]?["region"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
