// recoveryctl, the operator CLI: wiring only. The commands and their logic are in Sources/FleetControl
// (CLI.swift); usage in docs/operations.md.
import FleetControl

await RecoveryCtlCommand.runFromCommandLine()
