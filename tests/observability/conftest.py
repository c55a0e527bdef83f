from tests.jobs.conftest import jobs_key, start_job_server  # noqa: F401  (shared fixtures)
from tests.nodes.conftest import issue_token, node_token  # noqa: F401
