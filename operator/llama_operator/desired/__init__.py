"""The desired state of a LlamaDeployment (pure): one look in -- the object, the crash-loop check's decision, the
cluster's inputs, the serving workload as read, the time -- and one result out: the effective configuration, the
children to apply, the status patch and the Events to post. handlers.writer does the I/O."""

from llama_operator.desired.plan import Inputs, Plan, document, owner_of, parse, plan, status_of
from llama_operator.desired.refusal import REFUSED, REFUSED_MESSAGE_MAX, refusal_finding, with_refusal
from llama_operator.desired.state import Desired, desired_state, refused

__all__ = [
    "REFUSED",
    "REFUSED_MESSAGE_MAX",
    "Desired",
    "Inputs",
    "Plan",
    "desired_state",
    "document",
    "owner_of",
    "parse",
    "plan",
    "refusal_finding",
    "refused",
    "status_of",
    "with_refusal",
]
