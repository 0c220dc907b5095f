// The qrexec policy engine's public surface: load Qubes' policy format v5 through a caller-given
// file interface, and evaluate calls against a snapshot of the qubes. Pure: no I/O of its own.

export { PolicySyntaxError, isPolicySyntaxError } from './errors';
export { type LoadOptions, type Policy, type PolicyFs, DEFAULT_COMPAT_DIR, emptyPolicy, loadPolicyDir, loadPolicyFile, parsePolicyText } from './loader';
export { MemoryPolicyFs } from './memory-fs';
export { type ActionKind, type Rule, type RuleAction, formatRule } from './rule';
export { type DomainInfo, type SystemInfo } from './system';
export { type TokenContext, type TokenKind, type VmToken, isLegal } from './tokens';
export { type NormalizedRequest, type PolicyRequest, MAX_SERVICE_CALL_LENGTH, normalizeRequest, serviceCallProblem, splitServiceCall } from './request';
export { type Resolution, type ResultKind, type RuleRef, type Stage, daemonResponse } from './resolution';
export { type AskAnswer, type NonInteractiveOptions, answerAsk, evaluate, evaluateNonInteractive, findMatchingRule } from './evaluator';
export { collectTargetsForAsk } from './ask-targets';
