// Public surface of the sandbox backend (OCI runtime: namespaces, seccomp, cgroups, user namespace).
// The daemon imports from here only; the files behind it may move.

export { RuncBackend, removeCgroupParent, runcErrorLine, type RuncBackendOptions } from './runc-backend';
export { sandboxRuntimeSpec, AGENT_IN_QUBE, GUEST_LIB, type QubeRuntimeSpec, type QubeMount } from './sandbox-spec';
export {
  buildOciSpec, validateRuntimeSpec, cgroupsPathFor, QUBE_CAPABILITIES, MASKED_PATHS, READONLY_PATHS,
  DEFAULT_NOFILE_HARD, type OciHostOptions, type OciSpec,
} from './oci-spec';
export { seccompProfile, FORBIDDEN as FORBIDDEN_SYSCALLS, CLONE_NAMESPACE_FLAGS, type SeccompProfile } from './seccomp-profile';
export { probeOciRuntime, isPureCgroupV2, type OciRuntimeChoice, type OciRuntimeName } from './runtime-probe';
