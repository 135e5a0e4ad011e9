"""The YAML file made typed, frozen settings: loading (``loader``), the models
(``settings``, ``database``), ``${ENV}`` (``interpolation``), what changed on a
reload (``diff``) and a schedule's timing (``schedules``). May import domain,
scheduling, webhooks and the kinds' declarations (channels, sources, jobs, notify)."""
