import { type Paths, paths as defaultPaths } from "../core/paths.ts";
import { Contexts } from "../core/contexts.ts";
import { invalid, PrisnError } from "../core/errors.ts";
import { validateNamespace } from "../core/namespace.ts";
import { readConfigFile } from "../core/fs.ts";
import { validateServer } from "../core/contexts.ts";
import { AgentClient, type RemoteTarget } from "../runtime/client.ts";

/** The options every command takes: which agent to talk to. */
export interface Globals {
  server?: string;
  token?: string;
  context?: string;
  /** -n/--namespace, as given (repeatable for token create). */
  namespace?: string[];
  /** -A/--all-namespaces */
  allNamespaces?: boolean;
}

/** What the CLI talks to: the local agent, or a remote one (through a context or not). */
export type Target =
  | { kind: "local"; paths: Paths }
  | { kind: "remote"; context?: string; remote: RemoteTarget };

/** What every command gets: the data root, a lazily connected agent client, and output. */
export class App {
  #client?: AgentClient;
  #target?: Target;
  readonly paths: Paths;
  /** The exit code the command asks for (0 unless it sets one). */
  exitCode = 0;
  /** --server, --token, --context (main.ts sets them before a command runs). */
  globals: Globals = {};

  constructor(paths: Paths = defaultPaths(), readonly out: (text: string) => void = println) {
    this.paths = paths;
  }

  /**
   * Which agent: `--context NAME`, else `--server`/`--token` (or PRISN_SERVER/PRISN_TOKEN), else
   * the current context, else the local one. `--server`/`--token` also override a context's.
   * The CA that signed a remote agent's certificate: PRISN_CA (a file, as `context add --ca`),
   * else the context's; like PRISN_TOKEN, it does not override `--context NAME`.
   */
  async target(options: { current?: boolean } = {}): Promise<Target> {
    const g = this.globals;
    const envServer = Deno.env.get("PRISN_SERVER") || undefined;
    const envToken = Deno.env.get("PRISN_TOKEN") || undefined;
    const contexts = await Contexts.open();
    const current = options.current === false ? undefined : contexts.current;
    const name = g.context ?? (g.server ?? envServer ? undefined : current);
    const context = name === undefined ? undefined : contexts.get(name);
    const server = g.server ?? (g.context ? undefined : envServer) ?? context?.server;
    if (server === undefined) {
      if (g.token) throw invalid("--token goes with --server URL (or a context): give both");
      return { kind: "local", paths: this.paths };
    }
    const token = g.token ?? (g.context ? undefined : envToken) ?? context?.token;
    const envCa = g.context ? undefined : Deno.env.get("PRISN_CA") || undefined;
    const caFile = envCa ?? context?.ca;
    const ca = caFile === undefined
      ? undefined
      : await readConfigFile(caFile, { label: `CA file ${caFile}` });
    if (caFile !== undefined && ca === undefined) {
      throw invalid(
        envCa !== undefined
          ? `PRISN_CA names ${caFile}, which does not exist: give the CA file that signed the agent's certificate`
          : `context "${name}": its CA file ${caFile} does not exist`,
      );
    }
    this.#contextNamespace = context?.namespace;
    return { kind: "remote", context: name, remote: { server: validateServer(server), token, ca } };
  }

  /**
   * The namespace commands address: -n, else the context's; undefined: none said (the agent
   * takes "default", or for `ls` a scoped token's namespaces).
   */
  namespace(): string | undefined {
    const given = this.globals.namespace ?? [];
    if (given.length > 1) {
      throw invalid(
        `give one -n/--namespace (only token create takes several): got ${given.join(", ")}`,
      );
    }
    return given[0] === undefined ? this.#contextNamespace : validateNamespace(given[0]);
  }

  #contextNamespace?: string;

  /**
   * The agent: a remote one, or the local one started in the background when none runs. With
   * `admin` (the token commands): the machine's own agent, whose socket owner is admin, unless
   * --context, --server or PRISN_SERVER name another; the current context is not taken, and no
   * local agent is started for it.
   */
  async agent(options: { admin?: boolean } = {}): Promise<AgentClient> {
    if (!this.#client) {
      const target = await this.target({ current: !options.admin });
      if (options.admin && target.kind === "local") {
        const client = await AgentClient.existing(this.paths);
        if (!client) {
          throw new PrisnError(
            "UNAVAILABLE",
            `no agent runs for ${this.paths.home}: tokens are managed on the agent's machine, ` +
              `or give --context/--server with the admin token`,
          );
        }
        this.#target = target;
        return this.#client = client;
      }
      this.#target = target;
      const namespace = this.namespace(); // a bad one is refused before an agent is started
      this.#client = target.kind === "remote"
        ? new AgentClient(target.remote)
        : await AgentClient.connect(this.paths);
      this.#client.namespace = namespace;
    }
    return this.#client;
  }

  /** The remote agent `agent()` talks to, in words ("context dev (https://…)"); else undefined. */
  talkingTo(): string | undefined {
    const t = this.#target;
    if (!t || t.kind === "local") return undefined;
    return t.context ? `context ${t.context} (${t.remote.server})` : `server ${t.remote.server}`;
  }

  close(): void {
    this.#client?.close();
  }
}

function println(text: string): void {
  console.log(text);
}
