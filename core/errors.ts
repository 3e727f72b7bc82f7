import { DEFAULT_NAMESPACE, splitKey } from "./namespace.ts";

/** Error codes callers branch on; main.ts maps them to exit codes. */
export type ErrorCode =
  | "INVALID" // bad input from the user: flags, names, prisn.toml, paths
  | "NOT_FOUND" // an unknown deployment, version or run
  | "CONFLICT" // the request clashes with current state (port taken, agent running…)
  | "UNAVAILABLE" // something prisn needs is missing or unreachable (interpreter, agent, git)
  | "UNAUTHORIZED" // the remote API got no valid token
  | "FORBIDDEN" // the token is valid but may not do this
  | "TOO_LARGE" // an upload over the agent's cap
  | "FAILED"; // an operation ran and failed (install, readiness, spawn)

/**
 * The one error type prisn raises on purpose. `message` is one line that says what is wrong and,
 * where there is one, what to do about it; it is printed to the user as is.
 */
export class PrisnError extends Error {
  override name = "PrisnError";
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function invalid(message: string): PrisnError {
  return new PrisnError("INVALID", message);
}

export function notFound(message: string): PrisnError {
  return new PrisnError("NOT_FOUND", message);
}

/**
 * The one wording for a deployment key (core/namespace.ts) that is not deployed; a namespace the
 * caller may not see reads the same, so the answer tells nothing about what exists there.
 */
export function deploymentNotFound(key: string): PrisnError {
  const { namespace, name } = splitKey(key);
  return notFound(
    namespace === DEFAULT_NAMESPACE
      ? `deployment "${name}" not found: see prisn ls`
      : `deployment "${name}" not found in namespace "${namespace}": see prisn ls -n ${namespace}`,
  );
}
