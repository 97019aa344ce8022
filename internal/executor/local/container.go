package local

import (
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// CloneCommand returns the command line that prepares a workspace in a
// container (the Kubernetes executor's clone init container) exactly as
// a local execution's preparation does: the same refs, fetches, fixed
// merge identity and date, so both executors test the same commit. It
// runs in the empty directory that becomes the job's src, with sh and git
// on the PATH, and writes its report ("exec", or "<Reason> <message>") to
// reportFile, which ParseCloneReport reads back.
func CloneCommand(refs run.Refs, reportFile string) []string {
	// No job script (stop after the checkout), and no mirror: a Pod
	// clones from the repository itself.
	args := prepareArgs("sh", "git", refs, workspace(""), "")
	args[len(args)-2] = "/dev/null"
	// Descriptor 3, where the script reports, goes to reportFile.
	args[2] = "exec 3>" + reportFile + "\n" + args[2]
	return args
}

// ParseCloneReport returns the infrastructure failure a CloneCommand
// reported, or nil if the checkout went through.
func ParseCloneReport(report string) *executor.InfraError {
	return parsePreparation(report).infra
}
