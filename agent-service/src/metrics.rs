//! The agent service's own metrics, beside the serving layer's (`shared::telemetry::metrics`):
//! model calls and their tokens (the GenAI semantic conventions), inner tool calls (MCP client
//! operations), expert turns and the conversations they start. Labels are model, tool and expert names, tenants and outcomes;
//! never a question, an answer or an argument.

use std::sync::LazyLock;

use opentelemetry::metrics::{Counter, Histogram};
use shared::telemetry::metrics::{counter, meter, seconds};

pub(crate) struct Metrics {
    /// `gen_ai.client.operation.duration`: each model call.
    pub model_duration: Histogram<f64>,
    /// `gen_ai.client.token.usage`: tokens per call, `gen_ai.token.type` input or output.
    pub tokens: Histogram<u64>,
    /// `mcp.client.operation.duration`: each inner `tools/call`.
    pub tool_call_duration: Histogram<f64>,
    /// `agent.turns`: expert turns, by expert and outcome.
    pub turns: Counter<u64>,
    /// `agent.conversations.started`: conversations a first question started, by expert and
    /// tenant.
    pub conversations: Counter<u64>,
    /// `agent.turn.tool_calls`: inner tool calls one turn made.
    pub turn_tool_calls: Histogram<u64>,
}

pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        model_duration: seconds(
            "gen_ai.client.operation.duration",
            "Duration of the experts' model calls",
        ),
        tokens: meter()
            .u64_histogram("gen_ai.client.token.usage")
            .with_unit("{token}")
            .with_description("Tokens used by the experts' model calls")
            .with_boundaries(vec![
                16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            ])
            .build(),
        tool_call_duration: seconds(
            "mcp.client.operation.duration",
            "Duration of the experts' calls of the tools service",
        ),
        turns: counter("agent.turns", "Expert turns, by expert and outcome"),
        conversations: counter(
            "agent.conversations.started",
            "Conversations started with the experts, by expert and tenant",
        ),
        turn_tool_calls: meter()
            .u64_histogram("agent.turn.tool_calls")
            .with_unit("{call}")
            .with_description("Inner tool calls of one expert turn")
            .with_boundaries(vec![0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0])
            .build(),
    });
    &METRICS
}
