import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { Config } from '../config';
import type { Logger } from '../log';
import { serveMetrics } from '../metrics-server';
import { loadRunbooksOrExit } from '../runbooks/load';
import { loadTls } from './tls';

// One ingest node on several cores (MXF_INGEST_PROCESSES). Node runs JavaScript on one core per process, so a node
// with cores of its own would otherwise use one of them. With N > 1 a primary forks N processes that share the SMTP
// port (node:cluster: the primary accepts each connection and hands it to the next free process, round robin,
// Node's default on Linux) and does nothing else: no SMTP, no storage. It
//   - hands every process its role and the node's STARTTLS pair (one self-signed pair per node, not one per
//     process, so a sender sees the same certificate whichever process it reaches);
//   - serves the node's one Prometheus target, the sum of its processes' metrics (prom-client's
//     AggregatorRegistry asks each process for its registry at every scrape; a process forked again starts its
//     counters at zero, which Prometheus reads as a counter reset);
//   - forks a process again in the place of one that died, and on SIGTERM/SIGINT tells each to finish its
//     sessions, exiting once they all have.
// A process whose primary vanished (kill -9) exits at once: the primary's pid is all a supervisor knows of the
// node, so nothing of the node may outlive it, and a sender cut off mid-transaction got no 250 and sends again.
// The handing over costs CPU per connection, and each process gathers bodies into segments of its own: where the
// node shares 2 cores with MinIO and PostgreSQL, one process took more mail than two (bench/results/ingest.md).

/** What the primary tells each process it forks. */
export interface IngestProcessRole {
  /** 1..N; a process forked in place of a dead one keeps its slot. Log lines carry it as `worker`. */
  slot: number;
  /** N: limits meant for the node (MXF_SMTP_MAX_CLIENTS, MXF_SMTP_MAX_PER_IP) are shared among the processes. */
  processes: number;
  /**
   * The reconciler runs in slot 1 only. It rings every customer with held mail and sweeps orphan bodies every
   * MXF_RECONCILE_MS; that is work for the node, not per process: N copies would send N times the signals and scan
   * PostgreSQL and MinIO N times, and gain nothing (a ring is idempotent, the sweep already takes a lock).
   */
  reconciles: boolean;
  tls: { key: string; cert: string };
}

type ToPrimary = { type: 'mxf:hello' };
type ToProcess = { type: 'mxf:welcome'; role: IngestProcessRole };

/** A process that died this soon after its fork is forked again only after a pause, so a crash loop idles. */
const QUICK_DEATH_MS = 10_000;
const MAX_REFORK_PAUSE_MS = 30_000;

function primaryMetrics() {
  const registry = new Registry();
  return {
    registry,
    processes: new Gauge({
      name: 'mxf_ingest_processes',
      help: 'Ingest processes of this node taking mail',
      registers: [registry],
    }),
    reforks: new Counter({
      name: 'mxf_ingest_process_restarts_total',
      help: 'Ingest processes that died and were forked again',
      registers: [registry],
    }),
  };
}

/** The primary of an ingest node: forks the processes, serves their summed metrics, restarts and stops them. */
export async function superviseIngestProcesses(config: Config, log: Logger): Promise<void> {
  // Checked here too, so that bad runbooks print one clear line and exit with its code, not one per process.
  await loadRunbooksOrExit(config.runbooksDir);
  const tls = await loadTls(config, log);
  const processes = new IngestProcesses(config, log, tls);
  let metricsServer: Server | undefined;
  const stopNode = () => {
    metricsServer?.close();
    void processes.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stopNode);
  process.once('SIGTERM', stopNode);
  const failed = await processes.start();
  if (failed !== undefined) {
    // The processes still starting follow the primary out: a cluster worker exits when its channel closes.
    log.error({ exitCode: failed }, 'an ingest process could not start; stopping the node');
    process.exit(failed);
  }
  const aggregator = new AggregatorRegistry();
  const scrape = {
    contentType: aggregator.contentType,
    metrics: async () => (await aggregator.clusterMetrics()) + (await processes.metrics.registry.metrics()),
  };
  metricsServer = serveMetrics(scrape, config.smtp.metricsPort, config.api.host, log);
  log.info(
    {
      host: config.smtp.host,
      port: config.smtp.port,
      processes: config.smtp.processes,
      metricsPort: config.smtp.metricsPort,
    },
    'smtp ingest listening',
  );
}

class IngestProcesses {
  readonly metrics = primaryMetrics();
  private readonly processes = new Map<number, { slot: number; forkedAt: number; listening: boolean }>();
  private readonly quickDeaths = new Map<number, number>();
  private stopping = false;
  private started = false;
  private onStarted: (failed: number | undefined) => void = () => {};

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly tls: IngestProcessRole['tls'],
  ) {
    cluster.on('message', (worker, message: ToPrimary) => this.onMessage(worker, message));
    cluster.on('listening', (worker) => this.onListening(worker));
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
  }

  /** Forks every slot; resolves once all listen, or to the exit code of one that died before it listened. */
  start(): Promise<number | undefined> {
    return new Promise((resolve) => {
      this.onStarted = resolve;
      for (let slot = 1; slot <= this.config.smtp.processes; slot++) this.fork(slot);
    });
  }

  /**
   * SIGTERM to every process: each stops taking connections, lets its sessions finish (as a single ingest process
   * does on SIGTERM) and exits. A signal, not a message, so that a process still starting simply ends.
   */
  stop(): Promise<void> {
    this.stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    this.log.info({ processes: workers.length }, 'stopping the ingest processes');
    const exited = workers.map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    for (const worker of workers) worker.process.kill('SIGTERM');
    return Promise.all(exited).then(() => {});
  }

  private fork(slot: number): void {
    const worker = cluster.fork();
    this.processes.set(worker.id, { slot, forkedAt: Date.now(), listening: false });
  }

  private onMessage(worker: Worker, message: ToPrimary): void {
    if (message?.type !== 'mxf:hello') return;
    const { slot } = this.processes.get(worker.id)!;
    const { processes } = this.config.smtp;
    const role = { slot, processes, reconciles: slot === 1, tls: this.tls };
    // A process that died since it said hello cannot be told anything; its exit is handled on its own.
    worker.send({ type: 'mxf:welcome', role } satisfies ToProcess, (err: Error | null) => {
      if (err)
        this.log.debug({ worker: slot, err: err.message }, 'an ingest process left before its welcome');
    });
  }

  private onListening(worker: Worker): void {
    const proc = this.processes.get(worker.id);
    if (proc) proc.listening = true;
    const listening = [...this.processes.values()].filter((p) => p.listening).length;
    this.metrics.processes.set(listening);
    if (!this.started && listening === this.config.smtp.processes) {
      this.started = true;
      this.onStarted(undefined);
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const proc = this.processes.get(worker.id);
    this.processes.delete(worker.id);
    this.metrics.processes.set([...this.processes.values()].filter((p) => p.listening).length);
    if (this.stopping || !proc) return;
    if (!this.started) {
      this.onStarted(code || 1);
      return;
    }
    const quick =
      Date.now() - proc.forkedAt < QUICK_DEATH_MS ? (this.quickDeaths.get(proc.slot) ?? 0) + 1 : 0;
    this.quickDeaths.set(proc.slot, quick);
    const pauseMs = quick === 0 ? 0 : Math.min(MAX_REFORK_PAUSE_MS, 500 * 2 ** quick);
    this.log.warn(
      { worker: proc.slot, workerPid: worker.process.pid, code, signal, pauseMs },
      'an ingest process died; forking another in its place',
    );
    this.metrics.reforks.inc();
    setTimeout(() => {
      if (!this.stopping) this.fork(proc.slot);
    }, pauseMs);
  }
}

// ---- in a forked process ----------------------------------------------------------------------------------

/** From now on, this process ends with its primary. */
export function exitWithPrimary(log: Logger): void {
  // Node's cluster code already exits a worker whose channel to the primary closes, but silently and with status 0;
  // this says why, first.
  process.prependOnceListener('disconnect', () => {
    log.error('the ingest primary is gone; exiting');
    process.exit(1);
  });
}

/** Asks the primary who this process is (its slot, the reconciler or not) and for the node's TLS pair. */
export function askPrimaryForRole(): Promise<IngestProcessRole> {
  return new Promise((resolve) => {
    const onMessage = (message: ToProcess) => {
      if (message?.type !== 'mxf:welcome') return;
      process.off('message', onMessage);
      resolve(message.role);
    };
    process.on('message', onMessage);
    process.send!({ type: 'mxf:hello' } satisfies ToPrimary);
  });
}

/** This process's metrics, for the primary's scrape: it adds up every process's registry. */
export function shareMetricsWithPrimary(registry: Registry): void {
  // Constructing one adds the listener that answers the primary; setRegistries says which registry to send.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
}

/** A node-wide limit as one process's share, rounded up: round robin spreads connections evenly enough. */
export function processShare(config: Config, role: IngestProcessRole): Config {
  const share = (limit: number) => Math.ceil(limit / role.processes);
  return {
    ...config,
    smtp: {
      ...config.smtp,
      maxClients: share(config.smtp.maxClients),
      maxPerIp: share(config.smtp.maxPerIp),
    },
  };
}
