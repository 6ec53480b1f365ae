# mask_rcnn with EMOv2-20M, 1x (official: mask_rcnn/mask-rcnn_emo2_20M_fpn_1x_coco.py): the 1M recipe with another backbone
_base_ = './mask_rcnn_emov2_1m_fpn_1x_coco.py'

# no ImageNet weights are published for EMOv2-20M
model = dict(
    backbone=dict(model_name='emov2_20m', drop_path_rate=0.1, pretrained=False),
    neck=dict(in_channels=[64, 128, 320, 448]),
)
