"""Pipecat's `OpenAITTSService` in a pipeline, as a Pipecat app uses it, pointed at the gateway.

Usage: pipecat_tts.py BASE_URL API_KEY SETTINGS_JSON. Speaks one sentence and prints JSON:
{"audio_frames", "sample_rates", "pcm_bytes", "errors"}.
"""

import asyncio
import json
import sys

from pipecat.frames.frames import EndFrame, ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService


class Recorder(FrameProcessor):
    def __init__(self, seen: dict):
        super().__init__()
        self.seen = seen

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.seen["audio_frames"] += 1
            self.seen["pcm_bytes"] += len(frame.audio)
            self.seen["sample_rates"] = sorted(set(self.seen["sample_rates"]) | {frame.sample_rate})
        elif isinstance(frame, ErrorFrame):
            self.seen["errors"].append(str(frame.error)[:500])
        await self.push_frame(frame, direction)


async def main() -> None:
    base_url, api_key, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    seen = {"audio_frames": 0, "pcm_bytes": 0, "sample_rates": [], "errors": []}
    tts = OpenAITTSService(api_key=api_key, base_url=base_url,
                           settings=OpenAITTSService.Settings(**settings))
    pipeline = Pipeline([Recorder(seen), tts, Recorder(seen)])
    task = PipelineTask(pipeline, params=PipelineParams(audio_out_sample_rate=24000))

    @task.event_handler("on_pipeline_error")
    async def _on_error(_task, frame):
        seen["errors"].append(str(frame.error)[:500])

    await task.queue_frames([TTSSpeakFrame("Hello from a Pipecat pipeline."), EndFrame()])
    await asyncio.wait_for(PipelineRunner(handle_sigint=False).run(task), 60)
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main())
