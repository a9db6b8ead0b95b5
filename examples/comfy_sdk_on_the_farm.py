"""A stock comfy-sdk program on the farm: `make demo` prints COMFY_BASE_URL and COMFY_API_KEY."""

from comfy_sdk import Comfy, OutputReady, Progress

client = Comfy()  # reads COMFY_BASE_URL and COMFY_API_KEY
wf = client.workflows.from_file("workflows/library/sd15_text2image.api.json")
wf.set_input("3", "seed", 42)
job = client.submit(wf, metadata={"project": "readme"})
for event in job.events():  # status, progress, outputs; ends by itself
    if isinstance(event, Progress | OutputReady):
        print(event)
for output in job.refresh().outputs:
    print("saved", output.to_file(output.name))
