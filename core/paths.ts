import { join } from "node:path";

/** Every path prisn uses, derived from one data root (PRISN_HOME, default ~/.prisn). */
export interface Paths {
  home: string;
  db: string;
  socket: string;
  deployments: string;
  envs: string;
  logs: string;
  state: string;
}

/** The data root: PRISN_HOME, else ~/.prisn. */
export function defaultHome(): string {
  const home = Deno.env.get("PRISN_HOME");
  if (home) return home;
  const user = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".";
  return join(user, ".prisn");
}

export function paths(home: string = defaultHome()): Paths {
  return {
    home,
    db: join(home, "prisn.db"),
    socket: join(home, "prisn.sock"),
    deployments: join(home, "deployments"),
    envs: join(home, "envs"),
    logs: join(home, "logs"),
    state: join(home, "state"),
  };
}

export function deploymentDir(p: Paths, name: string): string {
  return join(p.deployments, name);
}

export function versionDir(p: Paths, name: string, version: string): string {
  return join(p.deployments, name, version);
}

/** logs/NAME/YYYY-MM-DD/<stream>.log for the given (UTC) day. */
export function logFile(p: Paths, name: string, stream: string, at: Date = new Date()): string {
  return join(p.logs, name, at.toISOString().slice(0, 10), `${stream}.log`);
}
