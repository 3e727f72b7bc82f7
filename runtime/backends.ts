import type { BackendInputs, Backends } from "../core/backends.ts";
import { LocalArtifacts } from "../core/local_artifacts.ts";
import { LocalDesiredState } from "../core/local_desired_state.ts";
import { LocalDispatcher } from "./local_dispatch.ts";
import { FileLogs } from "./logs.ts";

export type { BackendInputs, Backends };

/** One node on its own: SQLite + files, always the leader. */
export function localBackends({ paths, records, node }: BackendInputs): Backends {
  return {
    desired: new LocalDesiredState(records),
    artifacts: new LocalArtifacts(paths),
    logs: new FileLogs(paths),
    dispatcher: new LocalDispatcher(records, node),
  };
}
