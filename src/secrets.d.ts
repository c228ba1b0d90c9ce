// Secrets and optional bindings are not in wrangler.toml, so `wrangler types` cannot see them.
declare namespace Cloudflare {
  interface Env {
    /** Enables the admin API and dashboard; compared in constant time. */
    ADMIN_TOKEN?: string;
    /**
     * The deployment's secret (at least 32 characters; shorter is logged and ignored): keys the
     * `x-edge-mirror` marker on copies and sticky sampling. Deployments that share it never mirror
     * each other's copies again. Without it, the deployment keeps a key of its own in KV.
     */
    MIRROR_MARKER_KEY?: string;
    /** Optional Workers Analytics Engine dataset: one data point per mirror outcome. */
    MIRROR_ANALYTICS?: AnalyticsEngineDataset;
  }
}
