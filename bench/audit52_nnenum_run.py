"""nnenum as in its VNN-COMP main (settings auto), but writing the verdict AND its counterexample as
JSON (audit52; run with nnenum's src/ on PYTHONPATH, in nnenum's own venv; never a torchlean dependency).

    python bench/audit52_nnenum_run.py NET PROP TIMEOUT OUT.json
"""
import json
import sys

import numpy as np
from nnenum.enumerate import enumerate_network
from nnenum.nnenum import make_spec, set_control_settings, set_image_settings
from nnenum.onnx_network import load_onnx_network, load_onnx_network_optimized
from nnenum.settings import Settings


def main():
    onnx_filename, vnnlib_filename, timeout, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    spec_list, input_dtype = make_spec(vnnlib_filename, onnx_filename)
    try:
        network = load_onnx_network_optimized(onnx_filename)
    except Exception:
        network = load_onnx_network(onnx_filename)
    if len(spec_list[0][0]) < 700:
        set_control_settings()
    else:
        set_image_settings()
    result, cinput = "none", None
    for init_box, spec in spec_list:
        init_box = np.array(init_box, dtype=input_dtype)
        if timeout <= 0:
            result = "timeout"
            break
        Settings.TIMEOUT = timeout
        res = enumerate_network(init_box, network, spec)
        result = res.result_str
        timeout -= res.total_secs
        if result != "safe":
            if res.cinput is not None:
                cinput = [float(v) for v in res.cinput]
            break
    with open(out, "w") as f:
        json.dump({"result": result, "cinput": cinput}, f)


if __name__ == "__main__":
    main()
