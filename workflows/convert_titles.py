"""Node titles as the editor shows them: what ``_meta.title`` of an exported node says.

A node nobody renamed is titled with its class's ``display_name`` from ``/object_info``. Some
classes have none there; the editor then uses its own English locale, which names a few of them
differently from the class (``ImageBlur`` → "Image Blur"). The oracle (``tools/editor_oracle``)
lists every such class in ``tests/workflows/editor_fixtures/editor_titles.json``, and a test pins
this table to it.
"""

from __future__ import annotations

from comfyfarm.workflows.schema import NodeSchema

# The editor's English names of classes whose /object_info entry has no display_name
# (frontend 1.27.10; listed by tools/editor_oracle in editor_titles.json).
EDITOR_TITLES = {
    "ImageBlend": "Image Blend",
    "ImageBlur": "Image Blur",
    "ImageQuantize": "Image Quantize",
    "ImageSharpen": "Image Sharpen",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}


def editor_title(node_schema: NodeSchema) -> str:
    """The title the editor gives a node nobody renamed."""
    name = node_schema.display_name
    if name == node_schema.class_type:
        return EDITOR_TITLES.get(name, name)
    return name
