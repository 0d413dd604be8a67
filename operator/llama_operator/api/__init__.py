"""The LlamaDeployment API (``llamaops.dev/v1alpha1``): pydantic models of spec and status, and the CRD built
from them."""

from llama_operator.api.resource import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION, LlamaDeployment
from llama_operator.api.spec import (
    ConfigMapKeyRef,
    EngineSpec,
    LlamaDeploymentSpec,
    ModelConfigSource,
    ModelSpec,
    MonitoringSpec,
    RemediationSpec,
    ResourcesSpec,
    SecretKeyRef,
    Toleration,
    ValidationSpec,
)
from llama_operator.api.status import (
    Condition,
    EffectiveConfig,
    Finding,
    LastKnownGood,
    LlamaDeploymentStatus,
    MemoryPlan,
    Remediation,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "Condition",
    "ConfigMapKeyRef",
    "EffectiveConfig",
    "EngineSpec",
    "Finding",
    "LastKnownGood",
    "LlamaDeployment",
    "LlamaDeploymentSpec",
    "LlamaDeploymentStatus",
    "MemoryPlan",
    "ModelConfigSource",
    "ModelSpec",
    "MonitoringSpec",
    "Remediation",
    "RemediationSpec",
    "ResourcesSpec",
    "SecretKeyRef",
    "Toleration",
    "ValidationSpec",
]
