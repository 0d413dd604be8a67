"""kopf's diff base (the last handled essence of each LlamaDeployment, kept in an annotation), compact when large.

kopf writes the object's essence (spec, labels, annotations) as JSON into one annotation, to tell a change of the
spec from its own writes. Kubernetes allows 256 KiB of annotations per object in all, and the CRD lets a spec grow
past that (spec.model.config.inline, nodeSelector values): kopf's patch was refused (422) and it retried the
object forever, logging a traceback each time. An essence over ESSENCE_MAX characters is kept as its digest
instead: equal essences still compare equal and a change still shows; the handlers read the body, not kopf's diff.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import kopf

ESSENCE_MAX = 16 * 1024


class CompactDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        encoded = json.dumps(essence, sort_keys=True, separators=(",", ":"))
        if len(encoded) <= ESSENCE_MAX:
            return essence
        # Under "spec", the one stanza kopf's essence type leaves free-form.
        return {"spec": {"sha256": hashlib.sha256(encoded.encode()).hexdigest(), "length": len(encoded)}}
