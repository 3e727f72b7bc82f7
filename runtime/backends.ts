import type { Artifacts } from "../core/artifacts.ts";
import type { DesiredState } from "../core/desired_state.ts";
import type { Dispatcher } from "../core/dispatch.ts";
import type { LogStore } from "../core/log_store.ts";
import { LocalArtifacts } from "../core/local_artifacts.ts";
import { LocalDesiredState } from "../core/local_desired_state.ts";
import type { Paths } from "../core/paths.ts";
import type { Records } from "../core/records.ts";
import { LocalDispatcher } from "./local_dispatch.ts";
import { FileLogs } from "./logs.ts";

/** The set of backends an agent runs on: one node's (below), or a cluster's (cluster/). */
export interface Backends {
  desired: DesiredState;
  artifacts: Artifacts;
  logs: LogStore;
  dispatcher: Dispatcher;
  /** Releases what the backends hold (connections, watches) after the agent stopped. */
  close?(): Promise<void>;
}

/** What backends are made from: this node's data root, its SQLite records and its name. */
export interface BackendInputs {
  paths: Paths;
  records: Records;
  node: string;
}

/** One node on its own: SQLite + files, always the leader. */
export function localBackends({ paths, records, node }: BackendInputs): Backends {
  return {
    desired: new LocalDesiredState(records),
    artifacts: new LocalArtifacts(paths),
    logs: new FileLogs(paths),
    dispatcher: new LocalDispatcher(records, node),
  };
}
