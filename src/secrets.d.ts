// Secrets and optional bindings are not in wrangler.toml, so `wrangler types` cannot see them.
declare namespace Cloudflare {
  interface Env {
    /** Enables the admin API and dashboard; compared in constant time. */
    ADMIN_TOKEN?: string;
    /**
     * Signs the `x-edge-mirror` marker on copies; deployments that share it never mirror each
     * other's copies again. Without it, no incoming marker is trusted.
     */
    MIRROR_MARKER_KEY?: string;
    /** Optional Workers Analytics Engine dataset: one data point per mirror outcome. */
    MIRROR_ANALYTICS?: AnalyticsEngineDataset;
  }
}
