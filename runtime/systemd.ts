/**
 * Boot persistence: a systemd unit that runs `prisn agent run` with the flags given, so the agent
 * (and, from its records, every deployment at its desired state) comes back after a reboot.
 * @module
 */
import { join } from "node:path";
import { PrisnError } from "../core/errors.ts";
import { agentCommand } from "./client.ts";

/** The unit's name. */
export const UNIT_NAME = "prisn.service";

export interface UnitOptions {
  /** The data root the agent serves (written into the unit as PRISN_HOME). */
  home: string;
  /** Flags for `prisn agent run`, as given. */
  flags: string[];
  /** A user unit (`systemctl --user`, WantedBy default.target) rather than a system one. */
  user: boolean;
}

/** The unit file's text. */
export function renderUnit(options: UnitOptions): string {
  const { command, args } = agentCommand({ background: false });
  const exec = [command, ...args, ...options.flags].map(quoteArg).join(" ");
  return [
    "[Unit]",
    "Description=prisn agent: keeps deployed services, cronjobs and jobs running",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `Environment=${quoteArg(`PRISN_HOME=${options.home}`)}`,
    `ExecStart=${exec}`,
    // The agent stops its replicas itself (SIGTERM, grace, SIGKILL): systemd signals it alone, and
    // kills what is left only after the agent's own shutdown had time to finish.
    "KillMode=mixed",
    "TimeoutStopSec=90",
    "Restart=on-failure",
    "RestartSec=2",
    "LimitNOFILE=65536",
    "",
    "[Install]",
    `WantedBy=${options.user ? "default.target" : "multi-user.target"}`,
    "",
  ].join("\n");
}

/**
 * One ExecStart/Environment word: double-quoted when it holds anything systemd would read
 * otherwise; `%` and `$` doubled (specifiers and variables), `\\` and `"` escaped.
 */
export function quoteArg(word: string): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Where the unit goes: /etc/systemd/system, or ~/.config/systemd/user with `user`. */
export function unitPath(user: boolean): string {
  if (!user) return join("/etc/systemd/system", UNIT_NAME);
  const xdg = Deno.env.get("XDG_CONFIG_HOME") || join(Deno.env.get("HOME") ?? ".", ".config");
  return join(xdg, "systemd", "user", UNIT_NAME);
}

/** Refuses, in one line, where systemd is not the running init (a container, WSL…). */
export async function requireSystemd(): Promise<void> {
  const running = await Deno.stat("/run/systemd/system").then((s) => s.isDirectory, () => false);
  if (!running) {
    throw new PrisnError(
      "UNAVAILABLE",
      "systemd is not running on this machine (no /run/systemd/system): " +
        "see the unit with prisn agent install --print and start prisn agent run your own way",
    );
  }
}

/** `systemctl [--user] ARGS…`; a failure is one line with systemctl's own reason. */
export async function systemctl(user: boolean, ...args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemctl", {
      args: [...(user ? ["--user"] : []), ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new PrisnError("UNAVAILABLE", `systemctl could not run: ${(e as Error).message}`);
  }
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new PrisnError("FAILED", `systemctl ${args.join(" ")} failed: ${why}`);
  }
}
