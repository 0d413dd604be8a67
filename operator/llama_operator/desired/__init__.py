"""The desired state of a LlamaDeployment (pure): one look in -- the object, the crash-loop check's decision, the
cluster's inputs, the serving workload as read, the time -- and one result out: the effective configuration, the
children to apply, the status patch and the Events to post. handlers.writer does the I/O."""

from llama_operator.desired.plan import Inputs, Plan, owner_of, plan
from llama_operator.desired.refusal import REFUSED, REFUSED_MESSAGE_MAX, refusal_finding, with_refusal
from llama_operator.desired.state import Desired, desired_state, refused

__all__ = [
    "REFUSED",
    "REFUSED_MESSAGE_MAX",
    "Desired",
    "Inputs",
    "Plan",
    "desired_state",
    "owner_of",
    "plan",
    "refusal_finding",
    "refused",
    "with_refusal",
]
