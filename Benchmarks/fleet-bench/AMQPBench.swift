func runAMQPBenchmark(_ options: BenchOptions) async { print("amqp benchmark: not yet written") }
