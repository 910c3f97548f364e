import os
import shutil
import lit.formats

config.name = "peftc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".pir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(os.path.dirname(config.peftc_bin), "tests", "lit-out")
config.excludes = ["Inputs"]
config.substitutions.append(("%peftc", config.peftc_bin))
config.substitutions.append(("FileCheck", config.filecheck))
config.substitutions.append(("%srcroot", config.peftc_src))
config.substitutions.append(("%python", config.python))
config.environment["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "")
if shutil.which("strace"):
    config.available_features.add("strace")
