"""Generated bad input for LlamaDeployments (issue 12): hypothesis strategies drawn from the CRD schema
(``schema``) and from mutations of the examples (``mutations``), AdmissionReviews around them (``reviews``) and
the in-process checks every generated object must pass (``checks``)."""
