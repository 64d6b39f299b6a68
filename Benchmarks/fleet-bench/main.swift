// fleet-bench: prints throughput figures for the transports. See docs/benchmarks.md.
//   swift run -c release fleet-bench amqp [--messages N]     (needs AMQP_URL)
//   swift run -c release fleet-bench http --url URL [--requests N] [--concurrency C]
//   swift run -c release fleet-bench probe --url URL [--targets N] [--concurrency C] [--unconfirmed U] [--publish 0] (AMQP_URL, REDIS_URL)
//   swift run -c release fleet-bench decision [--events N] [--targets N]               (AMQP_URL, REDIS_URL)
//   swift run -c release fleet-bench pipeline [--targets N]                            (AMQP_URL, REDIS_URL)
//   swift run -c release fleet-bench bill [--targets N] [--trouble N] [--hours N]       (no servers; PREDICTION_* honoured)
//   swift run -c release fleet-bench codec [--rounds N]                                  (no servers)
//   fleet-bench scale --prefix P --fail-flag F --access-log L [--pids name=pid,…]    (run by scripts/bench-scale.sh)
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else {
    FileHandle.standardError.write(
        Data("usage: fleet-bench amqp|http|probe|decision|pipeline|scale|bill|codec [options]\n".utf8))
    exit(2)
}
let options = BenchOptions(Array(arguments.dropFirst()))
switch command {
case "amqp": await runAMQPBenchmark(options)
case "http": await runHTTPBenchmark(options)
case "probe": await runProbeBenchmark(options)
case "decision": await runDecisionBenchmark(options)
case "pipeline": await runPipelineBenchmark(options)
case "scale": await runScaleBenchmark(options)
case "bill": await runBillBenchmark(options)
case "codec": runCodecBenchmark(options)
default:
    FileHandle.standardError.write(Data("unknown benchmark \(command)\n".utf8))
    exit(2)
}

/// `--name value` pairs.
struct BenchOptions {
    var values: [String: String] = [:]
    init(_ args: [String]) {
        var i = 0
        while i < args.count {
            if args[i].hasPrefix("--"), i + 1 < args.count {
                values[String(args[i].dropFirst(2))] = args[i + 1]
                i += 2
            } else {
                i += 1
            }
        }
    }
    func int(_ name: String, default d: Int) -> Int { values[name].flatMap(Int.init) ?? d }
    func string(_ name: String) -> String? { values[name] }
}
