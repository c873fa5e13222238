"""Flow control: the engine policies, built on its step gates (`tether.engine.gates`,
ADR 87), whose state the store keeps so that they hold across every worker and server.

- `breakers`: circuit breakers per integration (ADR 91);
- `step_limits`: fleet-wide limits of running steps per integration (ADR 91);
- `integrations`: the one gate that asks both, in order, for a step's integration.

See docs/flow-control.md.
"""
