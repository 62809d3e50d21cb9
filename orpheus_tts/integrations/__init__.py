"""Voice-agent framework services (optional extras: `[pipecat]`, `[livekit]`)."""
