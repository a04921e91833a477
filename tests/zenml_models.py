"""Validates Kickoff's ZenML-dialect answers against ZenML's own response models (zenml 0.98.0,
installed into .tools/zenml-venv by infra/scripts/tools.sh).

usage: python tests/zenml_models.py ANSWERS.json
ANSWERS.json is a list of {"what": "...", "model": "<model>", "body": {...}}, <model> one of the names
below. Prints one line per answer that fails, with each error, and exits 1 if any did.
"""
import json
import sys

import zenml
from pydantic import ValidationError
from zenml.models import (
    OAuthTokenResponse,
    Page,
    PipelineBuildResponse,
    PipelineResponse,
    PipelineRunResponse,
    PipelineSnapshotResponse,
    ProjectResponse,
    StackResponse,
    UserResponse,
)
from zenml.models.v2.misc.server_models import ServerModel

MODELS = {
    "OAuthTokenResponse": OAuthTokenResponse,
    "ServerModel": ServerModel,
    "UserResponse": UserResponse,
    "ProjectResponse": ProjectResponse,
    "Page[ProjectResponse]": Page[ProjectResponse],
    "StackResponse": StackResponse,
    "Page[StackResponse]": Page[StackResponse],
    "PipelineSnapshotResponse": PipelineSnapshotResponse,
    "Page[PipelineSnapshotResponse]": Page[PipelineSnapshotResponse],
    "PipelineResponse": PipelineResponse,
    "Page[PipelineResponse]": Page[PipelineResponse],
    "PipelineBuildResponse": PipelineBuildResponse,
    "Page[PipelineBuildResponse]": Page[PipelineBuildResponse],
    "PipelineRunResponse": PipelineRunResponse,
    "Page[PipelineRunResponse]": Page[PipelineRunResponse],
}


def main(path):
    answers = json.load(open(path))
    failed = 0
    for a in answers:
        try:
            model = MODELS[a["model"]].model_validate(a["body"])
            # Nested models are validated as they are read (ZenML hydrates lazily): read them all.
            if a["model"] == "PipelineRunResponse" and model.resources is not None:
                original = model.resources.original_run
                if original is not None:
                    PipelineRunResponse.model_validate(original.model_dump(mode="json"))
        except ValidationError as e:
            failed += 1
            print(f"FAIL {a['what']} as {a['model']}:")
            for err in e.errors():
                loc = ".".join(map(str, err["loc"]))
                print(f"    {loc}: {err['type']} ({err['msg']})")
    print(f"validated {len(answers)} answers against zenml.models {zenml.__version__}: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
