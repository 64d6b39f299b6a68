func runHTTPBenchmark(_ options: BenchOptions) async { print("http benchmark: not yet written") }
